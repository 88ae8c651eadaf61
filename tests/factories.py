from __future__ import annotations

import factory
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import User

from lifecycle_app.models import CatalogModel, Job, JobKind, JobStatus, Project
from lifecycle_app.projects.services import project_create

PASSWORD = "correct-horse-battery-9"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.LazyFunction(lambda: make_password(PASSWORD))


def make_project(owner: User, name: str = "Ticket summaries") -> Project:
    """Projects are made through the service, so they have memberships and stages."""
    return project_create(owner=owner, name=name, description="")


class CatalogModelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CatalogModel
        django_get_or_create = ("slug",)

    slug = "tiny"
    name = "Tiny test model"
    source = "tiny"
    family = "decoder-only"
    architecture = "LlamaForCausalLM"
    n_params = 106816
    context_length = 4096
    n_layers = 2
    hidden_size = 64
    vocab_size = 512
    weights_present = True
    is_test_model = True
    # What prepare_models records for the tiny model (workers.ml.planner.shape.shape_from_config).
    shape = factory.LazyFunction(
        lambda: {
            "n_params": 106816,
            "n_layers": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "n_heads": 4,
            "n_kv_heads": 2,
            "head_dim": 16,
            "vocab_size": 512,
            "context_length": 4096,
            "tie_word_embeddings": True,
            "linear_modules": {
                "down_proj": [[128, 64, 2]],
                "gate_proj": [[64, 128, 2]],
                "k_proj": [[64, 32, 2]],
                "lm_head": [[64, 512, 1]],
                "o_proj": [[64, 64, 2]],
                "q_proj": [[64, 64, 2]],
                "up_proj": [[64, 128, 2]],
                "v_proj": [[64, 32, 2]],
            },
        }
    )


class JobFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Job

    kind = JobKind.GENERATE
    status = JobStatus.QUEUED
    base_model = factory.SubFactory(CatalogModelFactory)
    params = factory.LazyAttribute(
        lambda o: {"model_ref": o.base_model.slug, "prompt": "Hello", "max_new_tokens": 8}
    )
    progress_total = 8
    progress_unit = "tokens"


# Form posts shared by the view and form tests.
def scope_data(n_examples: int = 3, **overrides: str) -> dict[str, str]:
    data = {
        "task_type": "summarization",
        "use_case": "Support agents summarise long customer tickets into two lines.",
        "success_metric": "rouge_l",
        "metric_target": "0.4",
        "max_latency_ms": "800",
        "max_cost_per_1k": "0.25",
        "privacy": "internal",
        "hardware": "cpu",
        "ex-TOTAL_FORMS": str(n_examples),
        "ex-INITIAL_FORMS": "0",
        "ex-MIN_NUM_FORMS": "3",
        "ex-MAX_NUM_FORMS": "20",
    }
    for i in range(n_examples):
        data[f"ex-{i}-input"] = f"Ticket {i}: the printer on floor {i} is jammed again."
        data[f"ex-{i}-output"] = f"Printer {i} jammed."
    data.update(overrides)
    return data


def prompt_data(model: CatalogModel, **overrides: str) -> dict[str, str]:
    data = {
        "base_model": model.slug,
        "prompt": "Summarise: the printer is jammed.",
        "max_new_tokens": "16",
        "decoding": "greedy",
        "temperature": "0.7",
        "top_k": "50",
        "top_p": "0.95",
        "seed": "7",
        "use_chat_template": "on",
    }
    data.update(overrides)
    return data
