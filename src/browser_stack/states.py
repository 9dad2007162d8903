"""supervisord's process states and fault codes as data.

Values match supervisor/states.py and supervisor/xmlrpc.py; kept here so the
rest of the package decides by set membership and never imports supervisor.
"""

from __future__ import annotations

from enum import IntEnum


class ProcessState(IntEnum):
    STOPPED = 0
    STARTING = 10
    RUNNING = 20
    BACKOFF = 30
    STOPPING = 40
    EXITED = 100
    FATAL = 200
    UNKNOWN = 1000

    @classmethod
    def parse(cls, value: int) -> ProcessState:
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN


class Fault(IntEnum):
    UNKNOWN_METHOD = 1
    INCORRECT_PARAMETERS = 2
    BAD_ARGUMENTS = 3
    SIGNATURE_UNSUPPORTED = 4
    SHUTDOWN_STATE = 6
    BAD_NAME = 10
    BAD_SIGNAL = 11
    NO_FILE = 20
    NOT_EXECUTABLE = 21
    FAILED = 30
    ABNORMAL_TERMINATION = 40
    SPAWN_ERROR = 50
    ALREADY_STARTED = 60
    NOT_RUNNING = 70
    SUCCESS = 80
    ALREADY_ADDED = 90
    STILL_RUNNING = 91
    CANT_REREAD = 92


# A process supervisord has spawned and not given up on: starting it again is
# not needed (and answers ALREADY_STARTED).
ALIVE_STATES = frozenset({ProcessState.STARTING, ProcessState.RUNNING})
# States that tell an ensure the program failed to come up.
FAILED_STATES = frozenset({ProcessState.BACKOFF, ProcessState.EXITED, ProcessState.FATAL})
