"""Attribute names Traceway writes and reads: the one place they are spelled.

The SDK writes them on spans; the server's ingest maps them (and the GenAI,
MLflow and OpenInference equivalents) onto stored fields.
"""

from __future__ import annotations

from typing import Final

# Traceway's own span attributes.
SPAN_TYPE: Final = "traceway.span.type"
SPAN_INPUTS: Final = "traceway.span.inputs"  # JSON text
SPAN_OUTPUTS: Final = "traceway.span.outputs"  # JSON text
COST_USD: Final = "traceway.cost.usd"
#: JSON objects a span contributes to its trace's tags / metadata (merged on ingest).
TRACE_TAGS: Final = "traceway.trace.tags"
TRACE_METADATA: Final = "traceway.trace.metadata"
TRACE_REQUEST_PREVIEW: Final = "traceway.trace.request_preview"
TRACE_RESPONSE_PREVIEW: Final = "traceway.trace.response_preview"
#: Metadata keys that ``update_current_trace(session_id=..., user_id=...)`` sets.
METADATA_SESSION_ID: Final = "session_id"
METADATA_USER_ID: Final = "user_id"

# Resource attribute and request header naming the experiment.
RESOURCE_EXPERIMENT: Final = "traceway.experiment"
EXPERIMENT_HEADER: Final = "x-traceway-experiment"
DEFAULT_EXPERIMENT: Final = "Default"

# OpenTelemetry GenAI semantic conventions.
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_SYSTEM: Final = "gen_ai.system"  # older name of the provider attribute
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_RESPONSE_ID: Final = "gen_ai.response.id"
GEN_AI_RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
GEN_AI_REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TOP_P: Final = "gen_ai.request.top_p"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"

# MLflow's span attributes (values are JSON-encoded strings).
MLFLOW_SPAN_TYPE: Final = "mlflow.spanType"
MLFLOW_SPAN_INPUTS: Final = "mlflow.spanInputs"
MLFLOW_SPAN_OUTPUTS: Final = "mlflow.spanOutputs"
MLFLOW_TRACE_REQUEST_ID: Final = "mlflow.traceRequestId"
MLFLOW_CHAT_TOKEN_USAGE: Final = "mlflow.chat.tokenUsage"

# OpenInference's span attributes.
OPENINFERENCE_SPAN_KIND: Final = "openinference.span.kind"
OPENINFERENCE_INPUT_VALUE: Final = "input.value"
OPENINFERENCE_OUTPUT_VALUE: Final = "output.value"
OPENINFERENCE_TOKEN_PROMPT: Final = "llm.token_count.prompt"
OPENINFERENCE_TOKEN_COMPLETION: Final = "llm.token_count.completion"
OPENINFERENCE_TOKEN_TOTAL: Final = "llm.token_count.total"
OPENINFERENCE_MODEL_NAME: Final = "llm.model_name"
OPENINFERENCE_PROVIDER: Final = "llm.provider"
