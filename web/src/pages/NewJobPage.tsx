// New job form: pipeline and its parameters (ListPipelines), input (files uploaded from here, or a
// path on the worker), node (ListNodes), priority, attempts. Checks values before sending; places
// the server's INVALID_ARGUMENT next to the field. Chosen or dropped files are uploaded at once, a
// few at a time (hashing, then sending, resumable); the submit waits for them. One file: CreateJob
// with its `input_uri`, then the job's page. Several: one CreateJobs call with a job per file (request
// ids derived from the specs, so a second submit duplicates nothing), each file's refusal shown next
// to it, and the jobs list once every file has its job.

import { useEffect, useMemo, useState } from "react";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Node } from "../gen/reelay/v1/node_pb";
import type { Pipeline } from "../gen/reelay/v1/pipeline_pb";
import { errorMessage } from "../api/errors";
import { ErrorBanner } from "../components/ErrorBanner";
import { Field, fieldAria, fieldId } from "../components/Field";
import { UploadField } from "../components/UploadField";
import { useUploads } from "../hooks/useUploads";
import { createJobsForFiles, type FileOutcome } from "../lib/batchSubmit";
import { mapServerErrors } from "../lib/fieldErrors";
import { nodeStateName } from "../lib/format";
import { defaultParams, isRequired, paramsToSend, validateJobForm, type JobFormValues } from "../lib/params";
import { newRequestId } from "../lib/requestId";
import { navigate, paths } from "../lib/router";
import { isBusy, type UploadItem } from "../lib/uploadQueue";
import { useServices } from "../state/services";

const emptyForm: JobFormValues = { pipeline: "", params: {}, inputPath: "", nodeId: "", priority: "0", maxAttempts: "1" };

/** Form field names, as the spec names them (server errors use the same). */
function fieldNames(pipeline: Pipeline | undefined): string[] {
  return ["pipeline", "input_uri", "input_path", "node_id", "priority", "max_attempts", ...(pipeline?.params ?? []).map((p) => `params.${p.name}`)];
}

export function NewJobPage() {
  const { clients, feed, uploads } = useServices();
  const { queue, items } = useUploads(uploads);
  const hasFile = items.length > 0;
  // After a submit of several files: each file's job or why it was refused, by item key.
  const [outcomes, setOutcomes] = useState<Record<string, FileOutcome>>({});
  const [pipelines, setPipelines] = useState<Pipeline[] | null>(null);
  const [nodes, setNodes] = useState<Node[]>([]);
  const [loadError, setLoadError] = useState<unknown>(null);
  const [values, setValues] = useState<JobFormValues>(emptyForm);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [general, setGeneral] = useState<string[]>([]);
  const [submitting, setSubmitting] = useState(false);
  // One idempotency key per distinct form content: resubmitting after a lost reply cannot create twice.
  const [requestId, setRequestId] = useState(newRequestId);

  useEffect(() => {
    clients.pipelines.listPipelines({}).then(
      (response) => {
        setPipelines(response.pipelines);
        const first = response.pipelines[0];
        if (first) setValues((v) => (v.pipeline ? v : { ...v, pipeline: first.name, params: defaultParams(first) }));
      },
      (e: unknown) => setLoadError(e),
    );
    clients.nodes.listNodes({}).then(
      (response) => setNodes(response.nodes),
      () => setNodes([]),
    );
  }, [clients]);

  const pipeline = useMemo(() => pipelines?.find((p) => p.name === values.pipeline), [pipelines, values.pipeline]);

  const change = (next: JobFormValues, field: string) => {
    setValues(next);
    setRequestId(newRequestId());
    if (errors[field]) setErrors(({ [field]: _, ...rest }) => rest);
  };

  const choosePipeline = (name: string) => {
    const chosen = pipelines?.find((p) => p.name === name);
    change({ ...values, pipeline: name, params: defaultParams(chosen) }, "pipeline");
    setErrors({});
  };

  const submit = async () => {
    setGeneral([]);
    const problems = validateJobForm(values, pipeline, hasFile);
    setErrors(problems);
    if (Object.keys(problems).length > 0) return;
    setSubmitting(true);
    // The upload rows say what went wrong and offer a retry.
    const files = hasFile ? await queue.settled() : [];
    if (files.length > 1) {
      await submitSeveral(files);
      setSubmitting(false);
      return;
    }
    let inputUri = "";
    if (files.length === 1) {
      const upload = files[0].upload;
      if (files[0].status !== "done" || !upload) {
        setSubmitting(false);
        return;
      }
      inputUri = `upload:${upload.id}`;
    }
    try {
      const job = await clients.jobs.createJob({
        requestId,
        spec: {
          pipeline: values.pipeline,
          params: paramsToSend(values.params),
          inputPath: values.inputPath.trim(),
          inputUri,
          nodeId: values.nodeId,
          priority: Number(values.priority || "0"),
          maxAttempts: Number(values.maxAttempts || "0"),
        },
      });
      feed.mergeJobs([job]);
      navigate(paths.job(job.id));
    } catch (e) {
      if (e instanceof ConnectError && (e.code === Code.InvalidArgument || e.code === Code.FailedPrecondition || e.code === Code.NotFound)) {
        const mapped = mapServerErrors(e.rawMessage, fieldNames(pipeline));
        setErrors(mapped.fields);
        setGeneral(mapped.general);
      } else {
        setGeneral([errorMessage(e)]);
      }
    } finally {
      setSubmitting(false);
    }
  };

  /** One job per file in one CreateJobs call; files that have their job already are not sent again. */
  const submitSeveral = async (files: readonly UploadItem[]) => {
    const failed = files.filter((item) => item.status !== "done" || !item.upload).length;
    if (failed > 0) {
      setGeneral([`${failed} of ${files.length} uploads failed: retry or remove them (the reasons are next to the files), then submit again`]);
      return;
    }
    const uploaded = files.map((item) => ({ key: item.key, uploadId: item.upload?.id ?? "" }));
    const send = files.flatMap((item, index) => (outcomes[item.key] && "job" in outcomes[item.key] ? [] : [index]));
    const form = {
      pipeline: values.pipeline,
      params: paramsToSend(values.params),
      inputPath: "",
      nodeId: values.nodeId,
      priority: Number(values.priority || "0"),
      maxAttempts: Number(values.maxAttempts || "0"),
      timeoutSeconds: 0,
      labels: {},
    };
    let results: FileOutcome[];
    try {
      results = await createJobsForFiles(uploaded, form, (request) => clients.jobs.createJobs(request), send);
    } catch (e) {
      // Sending again is safe: the request ids return the jobs already made.
      setGeneral([errorMessage(e)]);
      return;
    }
    setOutcomes((before) => ({ ...before, ...Object.fromEntries(results.map((result) => [result.key, result])) }));
    const jobs = results.flatMap((result) => ("job" in result ? [result.job] : []));
    feed.mergeJobs(jobs);
    const refused = results.length - jobs.length;
    if (refused === 0) {
      navigate(paths.jobs);
      return;
    }
    setGeneral([
      `${jobs.length} of ${results.length} jobs submitted; ${refused} refused (the reasons are next to their files). Submitting again sends only the refused ones.`,
    ]);
  };

  const busy = items.some(isBusy);
  const submitLabel = items.length > 1 ? `Submit ${items.length} jobs` : "Submit job";

  return (
    <section aria-labelledby="new-title">
      <h1 id="new-title">New job</h1>
      <ErrorBanner error={loadError} prefix="Could not load the pipelines" />
      {general.length ? (
        <div className="error-banner" role="alert" data-testid="form-error">
          {general.map((text) => (
            <p key={text}>{text}</p>
          ))}
        </div>
      ) : null}
      <form
        className="job-form"
        noValidate
        onSubmit={(event) => {
          event.preventDefault();
          void submit();
        }}
        data-testid="job-form"
      >
        <Field name="pipeline" label="Pipeline" error={errors.pipeline} hint={pipeline?.description}>
          <select {...fieldAria("pipeline", errors.pipeline, pipeline?.description)} value={values.pipeline} onChange={(e) => choosePipeline(e.target.value)} required>
            {pipelines === null ? <option value="">Loading…</option> : null}
            {pipelines?.length === 0 ? <option value="">No pipelines configured</option> : null}
            {pipelines?.map((p) => (
              <option key={p.name} value={p.name}>
                {p.name}
              </option>
            ))}
          </select>
        </Field>
        {pipeline?.params.map((param) => {
          const name = `params.${param.name}`;
          const hint = [param.description, param.pattern ? `pattern ${param.pattern}` : "", param.default ? `default ${param.default}` : ""].filter(Boolean).join(" · ");
          return (
            <Field key={name} name={name} label={`${param.name}${isRequired(param) ? " *" : ""}`} error={errors[name]} hint={hint}>
              <input
                {...fieldAria(name, errors[name], hint)}
                type="text"
                value={values.params[param.name] ?? ""}
                placeholder={param.default}
                required={isRequired(param)}
                onChange={(e) => change({ ...values, params: { ...values.params, [param.name]: e.target.value } }, name)}
              />
            </Field>
          );
        })}
        <Field name="input_uri" label={`Input files${pipeline?.inputRequired ? " *" : ""}`} error={errors.input_uri} hint="Uploaded to the coordinator; the worker fetches it. Several files: one job each">
          <UploadField
            id={fieldId("input_uri")}
            items={items}
            outcomes={outcomes}
            onFiles={(files) => {
              queue.add(files);
              setRequestId(newRequestId());
              setErrors(({ input_uri: _, input_path: __, ...rest }) => rest);
            }}
            onRemove={(key) => {
              queue.remove(key);
              setRequestId(newRequestId());
            }}
            onRetry={(key) => queue.retry(key)}
            describedBy={`${fieldId("input_uri")}-hint`}
          />
        </Field>
        <Field name="input_path" label="or an input path on the worker" error={errors.input_path} hint="Absolute path of a file already on the worker (not uploaded)">
          <input
            {...fieldAria("input_path", errors.input_path, "Absolute path of a file already on the worker (not uploaded)")}
            type="text"
            value={values.inputPath}
            onChange={(e) => change({ ...values, inputPath: e.target.value }, "input_path")}
          />
        </Field>
        <Field name="node_id" label="Node" error={errors.node_id} hint="Pin the job to a node (it waits for that node)">
          <select {...fieldAria("node_id", errors.node_id, "Pin the job to a node (it waits for that node)")} value={values.nodeId} onChange={(e) => change({ ...values, nodeId: e.target.value }, "node_id")}>
            <option value="">Any node</option>
            {nodes.map((node) => (
              <option key={node.id} value={node.id}>
                {node.id} ({nodeStateName(node.state).toLowerCase()})
              </option>
            ))}
          </select>
        </Field>
        <div className="field-row">
          <Field name="priority" label="Priority" error={errors.priority} hint="Higher runs first">
            <input {...fieldAria("priority", errors.priority, "Higher runs first")} type="number" step={1} value={values.priority} onChange={(e) => change({ ...values, priority: e.target.value }, "priority")} />
          </Field>
          <Field name="max_attempts" label="Max attempts" error={errors.max_attempts} hint="0 or 1: no retry">
            <input {...fieldAria("max_attempts", errors.max_attempts, "0 or 1: no retry")} type="number" min={0} step={1} value={values.maxAttempts} onChange={(e) => change({ ...values, maxAttempts: e.target.value }, "max_attempts")} />
          </Field>
        </div>
        <div className="form-buttons">
          <button type="submit" className="primary" disabled={submitting || !pipelines?.length} data-testid="submit-job">
            {submitting ? (busy ? "Uploading, then submitting…" : "Submitting…") : submitLabel}
          </button>
        </div>
      </form>
    </section>
  );
}
