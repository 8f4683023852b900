"""jupyter_kernel_test against the proxy kernel on the local endpoint (BACKEND_ENDPOINT unset)."""

from __future__ import annotations

import unittest
from typing import Any

import jupyter_kernel_test

from .conftest import LOCAL, kernel_env


class BackendAIKernelTests(jupyter_kernel_test.KernelTests):
    kernel_name = "backendai-python"
    language_name = "python"
    file_extension = ".py"
    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('test', file=sys.stderr)"
    code_generate_error = "raise ValueError('remote failure')"
    code_execute_result = [{"code": "6*7", "result": "42"}, {"code": "'a' + 'b'", "result": "'ab'"}]
    code_display_data = [
        {
            "code": "from IPython.display import HTML, display; display(HTML('<b>x</b>'))",
            "mime": "text/html",
        },
        {
            "code": "from IPython.display import Markdown, display; display(Markdown('*m*'))",
            "mime": "text/markdown",
        },
    ]
    completion_samples = [{"text": "zzz_remote_var.bit_len", "matches": {"bit_length"}}]
    complete_code_samples = ["1", "print('hi')", "def f():\n    pass\n"]
    incomplete_code_samples = ["def f(", "for i in range(3):"]
    invalid_code_samples = ["1 + )"]
    code_inspect_sample = "zzz_remote_var"
    code_page_something = "len?"
    # "range" is left out: its subtest wants the session number back, and IPython answers 0 for
    # the current session (a stock ipykernel fails it the same way).
    supported_history_operations = ("tail", "search")
    code_history_pattern = "6*7"
    code_clear_output = "from IPython.display import clear_output; clear_output()"
    _env: Any = None

    @classmethod
    def setUpClass(cls) -> None:
        cls._env = kernel_env(LOCAL)
        cls._env.__enter__()
        super().setUpClass()
        # A remote variable, so that completion and inspection can only come from the session.
        reply = cls.kc.execute_interactive("zzz_remote_var = 12345", timeout=90)
        assert reply["content"]["status"] == "ok"

    def setUp(self) -> None:
        # Status messages of the previous test's request (inspect, complete, ...) may still be
        # on their way; a test must not read them as its own.
        self.flush_channels()

    @classmethod
    def tearDownClass(cls) -> None:
        super().tearDownClass()
        cls._env.__exit__(None, None, None)

    def test_kernel_info_names_us(self) -> None:
        self.kc.kernel_info()
        reply = self.kc.get_shell_msg(timeout=10)
        assert reply["content"]["implementation"] == "backendai_jupyter"
        assert reply["content"]["language_info"]["name"] == "python"

    def test_local_cell_runs_in_the_proxy(self) -> None:
        reply, out = self.execute_helper("%%local\nimport os\nos.getpid()")
        assert reply["content"]["status"] == "ok", reply
        remote_reply, remote_out = self.execute_helper("import os\nos.getpid()")
        local_pid = [m for m in out if m["msg_type"] == "execute_result"]
        remote_pid = [m for m in remote_out if m["msg_type"] == "execute_result"]
        assert local_pid and remote_pid, (out, remote_out)
        assert local_pid[0]["content"]["data"] != remote_pid[0]["content"]["data"]
        error, _ = self.execute_helper("%%local\nraise KeyError('k')")
        assert error["content"]["status"] == "error" and error["content"]["ename"] == "KeyError"

    def test_execution_count_is_the_notebooks(self) -> None:
        first, _ = self.execute_helper("1")
        second, _ = self.execute_helper("%%local\n2")
        third, _ = self.execute_helper("3")
        counts = [r["content"]["execution_count"] for r in (first, second, third)]
        assert counts[1] == counts[0] + 1 and counts[2] == counts[1] + 1


if __name__ == "__main__":
    unittest.main()
