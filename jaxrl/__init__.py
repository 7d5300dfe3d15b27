"""jaxrl: the shared core every algorithm file may import.

Modules: ``envs`` (registry), ``wrappers``, ``trainer`` (what ``make_train`` returns), ``cli`` (the
command line of every agent), ``evaluation``, ``checkpoint`` (orbax), ``stats``, ``io``, ``config``.
Import them directly (``from jaxrl import envs``); this package imports nothing heavy itself.
"""
__version__ = "0.1.0"
