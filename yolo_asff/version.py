"""The package's version, in a module of its own so that every layer can name it without importing the
package root (which imports the config and the models)."""

__version__ = "0.1.0"
