"""One answer with an application: retrieval, the composed prompt, a reasoning aid,
citations and the human fallback (no Django; see `answer.answer_question`)."""
