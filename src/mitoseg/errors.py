"""One exception type for bad user input, so entry points can report it in one clear line."""


class InputError(ValueError):
    """Bad input from the user: a file, an option or a value that is not what was expected.

    The message always names the offending file or option and says what was expected.
    """
