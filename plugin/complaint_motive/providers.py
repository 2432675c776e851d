"""Recipes for OpenAI-compatible providers: where to send requests and which structured
output method each accepts. ``provider="deepseek"`` (or ``COMPLAINT_MOTIVE_PROVIDER``) fills
these in; anything set explicitly wins."""

from __future__ import annotations

from typing import Any

PROVIDERS: dict[str, dict[str, Any]] = {
    "openai": {"openai_base_url": None, "model": "gpt-4o-mini",
               "structured_output": "json_schema"},
    # Azure's v1 endpoint speaks the OpenAI API; the model is the deployment name.
    "azure": {"openai_base_url": "https://YOUR-RESOURCE.openai.azure.com/openai/v1/",
              "model": "YOUR-DEPLOYMENT", "structured_output": "json_schema"},
    # DeepSeek rejects response_format json_schema: JSON mode, schema described in the prompt.
    # deepseek-chat / deepseek-reasoner were retired on 2026-07-24; DeepSeek's pricing page
    # says "模型名请使用 deepseek-flash" (DeepSeek-V4.1-Flash; deepseek-v4-pro is the other).
    # Its models think by default ("思考模式默认打开"): one label call does not need it, and
    # thinking mode refuses a forced tool_choice, so it is turned off.
    "deepseek": {"openai_base_url": "https://api.deepseek.com", "model": "deepseek-flash",
                 "structured_output": "json_mode",
                 "extra_body": {"thinking": {"type": "disabled"}}},
    # Qwen through DashScope's compatible mode. In thinking mode DashScope rejects an object
    # tool_choice and JSON mode (400 InvalidParameter), and open-source Qwen3 models think by
    # default: thinking off.
    "qwen": {"openai_base_url": "https://dashscope.aliyuncs.com/compatible-mode/v1",
             "model": "qwen-plus", "structured_output": "function_calling",
             "extra_body": {"enable_thinking": False}},
    "vllm": {"openai_base_url": "http://localhost:8000/v1", "model": "Qwen/Qwen2.5-7B-Instruct",
             "structured_output": "json_schema"},
    # Ollama's OpenAI-compatible endpoint takes no num_ctx, and its default context ("< 24
    # GiB VRAM: 4k context"; 2048 on older builds) silently cuts a ~2.5k-token prompt plus a
    # long complaint: start the server with OLLAMA_CONTEXT_LENGTH=16384 (or PARAMETER num_ctx
    # 16384 in a Modelfile). See OLLAMA_CONTEXT_TOKENS.
    "ollama": {"openai_base_url": "http://localhost:11434/v1", "model": "qwen2.5:7b",
               "structured_output": "json_schema", "stream": True, "timeout": 300.0,
               "deadline": 900.0},
    # llama.cpp's server (llama-server, or llama-cpp-python's `python -m llama_cpp.server`):
    # its request model knows response_format text/json_object, and json_object takes a
    # "schema" that it compiles to a grammar for this request (never pasted into the
    # prompt, so the prompt's cached prefix holds). It serves whatever model it loaded,
    # whatever name the request gives. Not streamed: llama-cpp-python's streamed chunks
    # carry no token counts. On a CPU the whole answer comes after a minute or more,
    # hence the read timeout that waits for it.
    "llamacpp": {"openai_base_url": "http://localhost:8080/v1", "model": "local",
                 "structured_output": "json_object_schema", "token_limit_param": "max_tokens",
                 "timeout": 300.0, "deadline": 900.0},
}

#: The context an Ollama server needs for this library's prompt (guidance, exemplars and a
#: complaint of up to ``max_chars``, one token per character at worst) and the answer: set
#: ``OLLAMA_CONTEXT_LENGTH`` to at least this.
OLLAMA_CONTEXT_TOKENS = 16384
