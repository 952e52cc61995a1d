"""The one exception type of `bench.data`."""


class DataError(ValueError):
    """Bad input data or settings; the message is one line saying what is wrong and what to do."""
