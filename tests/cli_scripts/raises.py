"""A script with a bug of its own: the CLI must show its traceback as python would, and exit 1."""
import ember


def broken():
    return ember.ones(3) + ember.ones(4)


broken()
