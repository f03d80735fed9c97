"""No test can take the suite down: a test marked `isolated` runs in a forked process, whose crash
fails that test alone, and loading a llama.cpp model in the pytest process itself is refused (on
an Intel Xeon with AMX, llama.cpp's kernels crashed the whole suite from one such test)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = (Path(__file__).parent / "conftest.py").read_text()


def test_a_crash_fails_one_test_and_the_suite_goes_on(pytester):
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        """
        import os, signal, pytest

        @pytest.mark.isolated
        def test_crashes():
            os.kill(os.getpid(), signal.SIGSEGV)

        @pytest.mark.isolated
        def test_passes(tmp_path, monkeypatch):
            monkeypatch.setenv("SEEN", "1")
            assert tmp_path.exists() and os.environ["SEEN"] == "1"

        @pytest.mark.isolated
        def test_skips():
            pytest.skip("not on this CPU")

        @pytest.mark.isolated
        def test_fails():
            assert 1 + 1 == 3, "arithmetic"

        @pytest.mark.isolated
        def test_xfails():
            pytest.xfail("known llama.cpp bug")

        def test_after_the_crash():
            assert True
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=2, failed=2, skipped=1, xfailed=1)
    result.stdout.fnmatch_lines(["*died with SIGSEGV*", "*arithmetic*", "*not on this CPU*"])


def test_loading_a_model_in_the_pytest_process_is_refused(pytester, tiny_model):
    pytest.importorskip("llama_cpp", reason="the 'llama' extra (llama-cpp-python) is not installed")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        f"""
        import pytest

        def test_in_process():
            import llama_cpp
            llama_cpp.llama_model_load_from_file({str(tiny_model("dense-f16"))!r}.encode(), llama_cpp.llama_model_default_params())

        @pytest.mark.isolated
        def test_isolated():
            import llama_cpp
            model = llama_cpp.llama_model_load_from_file({str(tiny_model("dense-f16"))!r}.encode(), llama_cpp.llama_model_default_params())
            assert model
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*loaded a llama.cpp model in the pytest process*"])
