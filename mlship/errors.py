"""The one exception type that the command line turns into a one-line error."""


class UserError(Exception):
    """Bad input from the person or program calling mlship.

    The message names what is wrong and what is allowed; the command line prints it
    on one line and exits non-zero. Library code raises it instead of printing.
    """

    exit_code = 2
