"""Text a client may store (a scope, an error, an item, a worker's name)
that a terminal, a log reader or an eye would act on, and how an operator's
channel must show it (pgjobs.cli.output.printable): one place for the
operator-facing trust tests (tests/test_trust_terminal_text.py,
tests/test_trust_operator_channels.py), which each wrote these out."""

from __future__ import annotations

import re

# An OSC title, a CSI that clears the screen, a cursor move up, a forged
# `status:` line, a C1 CSI, a bidi override, a line separator.
FORGED_STATUS = ("t\x1b]0;owned\x07\x1b[2J\x1b[1A\nstatus: succeeded\tx\x9b2J"
                 "\u202egnp.exe\u2028z")
FORGED_STATUS_SHOWN = ("t\\x1b]0;owned\\x07\\x1b[2J\\x1b[1A\\nstatus: succeeded\\tx\\x9b2J"
                       "\\u202egnp.exe\\u2028z")
# A column that runs blanks together (items' error: a newline, a tab, a
# line separator are blanks to it) shows the rest as FORGED_STATUS_SHOWN does.
FORGED_STATUS_FLAT = ("t\\x1b]0;owned\\x07\\x1b[2J\\x1b[1A status: succeeded x\\x9b2J"
                      "\\u202egnp.exe z")

# An OSC title, a CSI that clears the screen, a carriage return, a forged
# log line, a C1 CSI, a bidi override, a line separator.
FORGED_LINE = "t\x1b]0;owned\x07\x1b[2J\r\nOK  forged\tx\x9b2J\u202egnp.exe\u2028z"
FORGED_LINE_SHOWN = "t\\x1b]0;owned\\x07\\x1b[2J\\r\\nOK  forged\\tx\\x9b2J\\u202egnp.exe\\u2028z"

UNSHOWN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
"""A character no operator's channel may write as it is: C0 and C1 controls
(but the newline and the tab that end lines and part columns), line and
paragraph separators, bidirectional overrides and isolates."""
