"""Every model of the app, one explicit line each.

Django loads only this module; the models live with the code that owns them (one package per
lifecycle stage or shared record). Code inside the app imports a model from its package, never
from here (the import contracts would see every package depending on every other).
"""

from lifecycle_app.catalog.models import Artifact as Artifact
from lifecycle_app.catalog.models import CatalogModel as CatalogModel
from lifecycle_app.catalog.models import CatalogModelQuerySet as CatalogModelQuerySet
from lifecycle_app.catalog.models import ModelSource as ModelSource
from lifecycle_app.datasets.models import Dataset as Dataset
from lifecycle_app.jobs.models import ACTIVE_STATUSES as ACTIVE_STATUSES
from lifecycle_app.jobs.models import Job as Job
from lifecycle_app.jobs.models import JobKind as JobKind
from lifecycle_app.jobs.models import JobStatus as JobStatus
from lifecycle_app.jobs.models import MetricPoint as MetricPoint
from lifecycle_app.projects.models import Activity as Activity
from lifecycle_app.projects.models import ActivityVerb as ActivityVerb
from lifecycle_app.projects.models import Membership as Membership
from lifecycle_app.projects.models import Project as Project
from lifecycle_app.projects.models import Role as Role
from lifecycle_app.projects.models import Stage as Stage
from lifecycle_app.projects.models import StageKey as StageKey
from lifecycle_app.projects.models import StepStatus as StepStatus
from lifecycle_app.stages.align.models import Choice as Choice
from lifecycle_app.stages.align.models import FeedbackItem as FeedbackItem
from lifecycle_app.stages.align.models import FeedbackRound as FeedbackRound
from lifecycle_app.stages.align.models import PreferencePair as PreferencePair
from lifecycle_app.stages.align.models import PreferenceSet as PreferenceSet
from lifecycle_app.stages.align.models import Rating as Rating
from lifecycle_app.stages.deploy.models import ApiToken as ApiToken
from lifecycle_app.stages.deploy.models import ModelVariant as ModelVariant
from lifecycle_app.stages.deploy.models import VariantKind as VariantKind
from lifecycle_app.stages.evaluate.models import CandidateStatus as CandidateStatus
from lifecycle_app.stages.evaluate.models import EvaluationCandidate as EvaluationCandidate
from lifecycle_app.stages.evaluate.models import EvaluationExample as EvaluationExample
from lifecycle_app.stages.integrate.api.models import ServingLog as ServingLog
from lifecycle_app.stages.integrate.app.models import AppEvalAnswer as AppEvalAnswer
from lifecycle_app.stages.integrate.app.models import AppEvalQuestion as AppEvalQuestion
from lifecycle_app.stages.integrate.app.models import AppEvalSet as AppEvalSet
from lifecycle_app.stages.integrate.app.models import Application as Application
from lifecycle_app.stages.integrate.app.models import ApplicationVersion as ApplicationVersion
from lifecycle_app.stages.integrate.app.models import FallbackQuestion as FallbackQuestion
from lifecycle_app.stages.integrate.knowledge.models import IndexStatus as IndexStatus
from lifecycle_app.stages.integrate.knowledge.models import KnowledgeDocument as KnowledgeDocument
from lifecycle_app.stages.integrate.knowledge.models import KnowledgeIndex as KnowledgeIndex
from lifecycle_app.stages.prompt.models import ExampleStatus as ExampleStatus
from lifecycle_app.stages.prompt.models import GenerationOutput as GenerationOutput
from lifecycle_app.stages.prompt.models import PromptTemplate as PromptTemplate
from lifecycle_app.stages.prompt.models import TrialExample as TrialExample
from lifecycle_app.teams.models import ShareLink as ShareLink
