// Client-side checks of a job form against the pipeline's parameter definitions (ListPipelines).
// The server validates again; these only spare a round trip and point at the field.

import type { Pipeline, PipelineParam } from "../gen/reelay/v1/pipeline_pb";

/** Whether the form must have a value: the server says so (it sets `required` for params without a default). */
export function isRequired(param: PipelineParam): boolean {
  return param.required;
}

/** Compiles a pattern so that it must match the whole value; null when JS cannot read it (the server still checks). */
export function compileWholePattern(pattern: string): RegExp | null {
  if (!pattern) return null;
  for (const flags of ["u", ""]) {
    try {
      return new RegExp(`^(?:${pattern})$`, flags);
    } catch {
      // try the next flavour
    }
  }
  return null;
}

/** The problem with one value, or null when it is fine. */
export function validateParam(param: PipelineParam, value: string): string | null {
  if (value === "") return isRequired(param) ? "required" : null;
  const re = compileWholePattern(param.pattern);
  if (re && !re.test(value)) return `must match ${param.pattern}`;
  return null;
}

/** Form values of a pipeline's parameters, starting from their defaults. */
export function defaultParams(pipeline: Pipeline | undefined): Record<string, string> {
  const values: Record<string, string> = {};
  for (const param of pipeline?.params ?? []) values[param.name] = param.default;
  return values;
}

export interface JobFormValues {
  pipeline: string;
  params: Record<string, string>;
  inputPath: string;
  nodeId: string;
  priority: string;
  maxAttempts: string;
}

/**
 * Field name (as in the spec: `params.<name>`, `input_path`...) -> problem. Empty when all is fine.
 * `hasFile`: a file was chosen to upload as the input (it stands for `input_path`).
 */
export function validateJobForm(values: JobFormValues, pipeline: Pipeline | undefined, hasFile = false): Record<string, string> {
  const errors: Record<string, string> = {};
  if (!values.pipeline) errors.pipeline = "required";
  else if (!pipeline) errors.pipeline = "unknown pipeline";
  for (const param of pipeline?.params ?? []) {
    const problem = validateParam(param, values.params[param.name] ?? "");
    if (problem) errors[`params.${param.name}`] = problem;
  }
  const hasPath = values.inputPath.trim() !== "";
  if (pipeline?.inputRequired && !hasPath && !hasFile) errors.input_path = "required";
  if (hasPath && hasFile) errors.input_path = "choose a file to upload or give a path on the worker, not both";
  if (values.priority.trim() !== "" && !/^-?\d+$/.test(values.priority.trim())) errors.priority = "must be a whole number";
  if (values.maxAttempts.trim() !== "" && !/^\d+$/.test(values.maxAttempts.trim())) errors.max_attempts = "must be a whole number ≥ 0";
  return errors;
}

/** Only the parameters that have a value: an empty one falls back to the pipeline's default. */
export function paramsToSend(values: Record<string, string>): Record<string, string> {
  const params: Record<string, string> = {};
  for (const [name, value] of Object.entries(values)) if (value !== "") params[name] = value;
  return params;
}
