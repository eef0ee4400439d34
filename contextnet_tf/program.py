"""How an `experiments/*.py` program ends on a user error: one line naming the file, flag or shape at fault.

    from contextnet_tf import program

    if __name__ == "__main__":
        program.run(main)

`run` is `absl.app.run` with one addition: a user error (`USER_ERRORS`: bad values, missing or corrupt files, data
that does not fit the model) prints ``program.py: error: <message>`` to stderr and exits with status 1, without a
traceback. ``--verbose`` shows the traceback instead, for a bug report. Flag syntax errors are absl's own (one line,
status 1). This module imports nothing from the package, so any layer may use it.
"""

import os
import sys

from absl import app, flags

# ValueError covers the package's DataError and RunRecordError; OSError covers missing, unreadable and unwritable
# files.
USER_ERRORS = (ValueError, OSError)

if "verbose" not in flags.FLAGS:
    flags.DEFINE_bool("verbose", False, "Show the full traceback of an error instead of its one-line message.")


def fail(message, status=1):
    """Prints ``program: error: message`` to stderr and exits with `status`."""
    print(f"{os.path.basename(sys.argv[0])}: error: {message}", file=sys.stderr)
    sys.exit(status)


def run(main, argv=None, user_errors=USER_ERRORS):
    """`absl.app.run(main)`, with the errors in `user_errors` ending the program in one line (see the module
    docstring)."""

    def guarded(args):
        try:
            return main(args)
        except user_errors as error:
            if flags.FLAGS.verbose:
                raise
            fail(str(error) or type(error).__name__)

    app.run(guarded, argv)
