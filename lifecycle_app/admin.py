from __future__ import annotations

from django.contrib import admin

from lifecycle_app.catalog.models import CatalogModel
from lifecycle_app.datasets.models import Dataset
from lifecycle_app.jobs.models import Job
from lifecycle_app.projects.models import Activity, Membership, Project, Stage
from lifecycle_app.stages.deploy.models import ApiToken, ModelVariant
from lifecycle_app.stages.prompt.models import GenerationOutput
from lifecycle_app.teams.models import ShareLink


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "owner", "created_at"]
    search_fields = ["name", "slug"]
    inlines = [MembershipInline]
    raw_id_fields = ["owner"]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["project", "user", "role"]
    list_filter = ["role"]
    list_select_related = ["project", "user"]


@admin.register(Stage)
class StageAdmin(admin.ModelAdmin):
    list_display = ["project", "key", "updated_at"]
    list_filter = ["key"]
    list_select_related = ["project"]


@admin.register(CatalogModel)
class CatalogModelAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "source", "family", "n_params", "context_length"]
    list_filter = ["source", "family"]


class GenerationOutputInline(admin.StackedInline):
    model = GenerationOutput
    extra = 0


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "kind", "status", "created_by", "created_at"]
    list_filter = ["status", "kind"]
    list_select_related = ["project", "created_by"]
    inlines = [GenerationOutputInline]


@admin.register(GenerationOutput)
class GenerationOutputAdmin(admin.ModelAdmin):
    list_display = ["job", "index", "output_tokens", "finish_reason"]


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "format", "valid_rows", "total_rows", "created_at"]
    list_filter = ["format", "classification"]
    list_select_related = ["project"]
    readonly_fields = ["stored_name", "sha256", "size_bytes"]


@admin.register(ShareLink)
class ShareLinkAdmin(admin.ModelAdmin):
    list_display = ["project", "label", "created_by", "created_at", "expires_at", "revoked_at"]
    list_select_related = ["project", "created_by"]
    readonly_fields = ["token"]
    raw_id_fields = ["project", "created_by"]


@admin.register(Activity)
class ActivityAdmin(admin.ModelAdmin):
    list_display = ["project", "actor", "verb", "description", "created_at"]
    list_filter = ["verb"]
    list_select_related = ["project", "actor"]
    raw_id_fields = ["project", "actor", "job"]


@admin.register(ModelVariant)
class ModelVariantAdmin(admin.ModelAdmin):
    list_display = ["project", "kind", "parent", "job", "deployed_at", "created_at"]
    list_filter = ["kind"]
    list_select_related = ["project", "parent", "job"]
    raw_id_fields = ["project", "job", "parent", "candidate"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["project", "name", "prefix", "created_by", "last_used_at", "revoked_at"]
    list_select_related = ["project", "created_by"]
    readonly_fields = ["prefix", "token_hash"]
    raw_id_fields = ["project", "created_by"]
