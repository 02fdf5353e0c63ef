"""The `pgjobs` command line: a click group that only delegates."""
