"""The backends that answer a prepared complaint: the LLM (``llm``) and the offline
analyzer."""
