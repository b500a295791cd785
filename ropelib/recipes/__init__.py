"""Training recipes: YAML files, one per paper setting, each citing its source.

They are read by :func:`ropelib.config.load_recipe`; ``python -m ropelib.train --list-recipes``
lists them.
"""
