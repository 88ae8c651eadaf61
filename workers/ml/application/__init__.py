"""One answer with an application: retrieval, the composed prompt, a reasoning aid,
citations and the human fallback (no Django; see `answer.answer_question`)."""

from workers.ml.application.answer import AppAnswer as AppAnswer
from workers.ml.application.answer import answer_question as answer_question
from workers.ml.application.config import AppConfig as AppConfig
