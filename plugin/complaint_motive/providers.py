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
    "deepseek": {"openai_base_url": "https://api.deepseek.com", "model": "deepseek-chat",
                 "structured_output": "json_mode"},
    # Qwen through DashScope's compatible mode; tool calling keeps the schema on thinking
    # models better than JSON mode.
    "qwen": {"openai_base_url": "https://dashscope.aliyuncs.com/compatible-mode/v1",
             "model": "qwen-plus", "structured_output": "function_calling"},
    "vllm": {"openai_base_url": "http://localhost:8000/v1", "model": "Qwen/Qwen2.5-7B-Instruct",
             "structured_output": "json_schema"},
    "ollama": {"openai_base_url": "http://localhost:11434/v1", "model": "qwen2.5:7b",
               "structured_output": "json_schema"},
}
