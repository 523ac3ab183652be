using System.Management.Automation;
using LoraPS.Evaluation;
using LoraPS.Models;
using LoraPS.Module.Infrastructure;

namespace LoraPS.Module.Commands;

/// <summary>Scores a model on lm-evaluation-harness tasks (and GLUE-style classification), one object per metric.</summary>
/// <remarks>
/// <para>
/// Invoke-LoraEval scores like EleutherAI's lm-evaluation-harness, so the numbers are comparable with published ones:
/// the same prompts, the context/continuation token split, BOS for an empty context, acc / acc_norm / is_greedy,
/// TruthfulQA mc2's probability mass, stderr = sample std / √n. Built-in tasks: arithmetic_{1dc,2da,2ds,2dm,3da,3ds,
/// 4da,4ds,5da,5ds}, truthfulqa_mc1, truthfulqa_mc2, blimp_&lt;paradigm&gt; (67), mmlu_&lt;subject&gt; (57), gsm8k, and
/// sst2, cola, mrpc for sequence-classification models. Names take wildcards (blimp_*, mmlu_high_school_*);
/// -ListTask lists them. Their data ships in the module's data folder; -DataRoot points at your own copy.
/// </para>
/// <para>
/// -TaskFile adds tasks defined by a file: a .txt file is scored for perplexity; a JSON Lines file holds one document
/// per line, {"context","choices","gold"} for multiple choice, {"context","continuation"} for log-likelihood, or
/// {"text"} for perplexity.
/// </para>
/// <para>
/// Without -Adapter the base model is scored (adapters disabled); -Adapter names adapters on the model to score in
/// turn, and -IncludeBase adds the base model, so base vs fine-tuned is one command. The adapter state is restored
/// afterwards. Each result has Task, Metric, Value, Stderr, N, Model, Adapter, NumFewshot and Truncated (contexts
/// left-truncated to the model's length). -OutFile writes lm-eval's results JSON. Ctrl+C returns what was scored so far.
/// </para>
/// </remarks>
/// <example>Score the bundled model on two tasks
/// <code>$model = Import-LoraModel
/// Invoke-LoraEval -Model $model -Task arithmetic_2da, blimp_causative -Limit 100</code>
/// <para>One row per metric: acc with its standard error over the first 100 documents of each task.</para>
/// </example>
/// <example>Base vs fine-tuned in one table
/// <code>Invoke-LoraEval $model -Adapter math -IncludeBase -Task arithmetic_2da, 'blimp_anaphor*' -Limit 200 |
///     Format-Table Task, Metric, Adapter, Value, Stderr</code>
/// <para>Scores the base model, then the adapter 'math', on the same weights.</para>
/// </example>
/// <example>MMLU 5-shot, saved as lm-eval JSON
/// <code>'mmlu_global_facts', 'mmlu_anatomy' | Invoke-LoraEval -Model $model -NumFewshot 5 -OutFile results.json</code>
/// <para>Task names come from the pipeline; results.json has results."mmlu_anatomy"."acc,none" and its stderr.</para>
/// </example>
/// <example>Perplexity of your own text, and a custom multiple-choice task
/// <code>Invoke-LoraEval -Model $model -TaskFile story.txt, my_quiz.jsonl</code>
/// <para>story.txt gives word_perplexity, byte_perplexity and bits_per_byte; my_quiz.jsonl acc and acc_norm.</para>
/// </example>
[Cmdlet(VerbsLifecycle.Invoke, "LoraEval", DefaultParameterSetName = EvaluateSet, SupportsShouldProcess = true)]
[OutputType(typeof(EvalResult))]
public sealed class InvokeLoraEvalCommand : LoraCmdlet
{
    const string EvaluateSet = "Evaluate";
    const string ListSet = "List";

    /// <summary>The model from Import-LoraModel: a causal LM for lm-eval tasks, a sequence classifier for sst2/cola/mrpc.</summary>
    [Parameter(Mandatory = true, Position = 0, ValueFromPipeline = true, ValueFromPipelineByPropertyName = true, ParameterSetName = EvaluateSet)]
    [ValidateNotNull]
    public LoraModel Model { get; set; } = null!;

    /// <summary>Task names or wildcards (blimp_*, mmlu_*, arithmetic_2d*); also from the pipeline.</summary>
    [Parameter(Position = 1, ValueFromPipeline = true, ParameterSetName = EvaluateSet)]
    [ValidateNotNullOrEmpty]
    public string[] Task { get; set; } = Array.Empty<string>();

    /// <summary>Tasks defined by files: .txt for perplexity, JSON Lines for multiple choice, log-likelihood or perplexity.</summary>
    [Parameter(ParameterSetName = EvaluateSet)]
    [ValidateNotNullOrEmpty]
    public string[] TaskFile { get; set; } = Array.Empty<string>();

    /// <summary>Adapters on the model to score, one after another; without it the base model is scored.</summary>
    [Parameter(ParameterSetName = EvaluateSet)]
    [ValidateNotNullOrEmpty]
    public string[] Adapter { get; set; } = Array.Empty<string>();

    /// <summary>With -Adapter: score the base model (adapters disabled) first as well.</summary>
    [Parameter(ParameterSetName = EvaluateSet)]
    public SwitchParameter IncludeBase { get; set; }

    /// <summary>Score only the first N documents of each task (lm-eval's --limit).</summary>
    [Parameter(ParameterSetName = EvaluateSet)]
    [ValidateRange(1, int.MaxValue)]
    public int Limit { get; set; }

    /// <summary>Few-shot examples per prompt (MMLU from dev, up to 5; gsm8k from train, default 5); others take 0.</summary>
    [Parameter(ParameterSetName = EvaluateSet)]
    [ValidateRange(0, 100)]
    public int NumFewshot { get; set; }

    /// <summary>Sequences per forward pass (default 16).</summary>
    [Parameter(ParameterSetName = EvaluateSet)]
    [ValidateRange(1, 4096)]
    public int BatchSize { get; set; } = 16;

    /// <summary>Resamples for the bootstrap standard errors of f1, mcc and perplexity (default 100000, as lm-eval).</summary>
    [Parameter(ParameterSetName = EvaluateSet)]
    [ValidateRange(0, 10_000_000)]
    public int BootstrapIterations { get; set; } = 100_000;

    /// <summary>A folder with the task data in LoraPS's data/ layout, instead of the bundled copy.</summary>
    [Parameter(ParameterSetName = EvaluateSet)]
    [ValidateNotNullOrEmpty]
    public string DataRoot { get; set; } = null!;

    /// <summary>Also write lm-eval's results JSON here; with several models or adapters one file each, named
/// results.&lt;model&gt;.&lt;adapter or base&gt;.json.</summary>
    [Parameter(ParameterSetName = EvaluateSet)]
    [ValidateNotNullOrEmpty]
    public string OutFile { get; set; } = null!;

    /// <summary>Overwrite an existing -OutFile.</summary>
    [Parameter(ParameterSetName = EvaluateSet)]
    public SwitchParameter Force { get; set; }

    /// <summary>List the built-in task names (filtered by -Name wildcards) instead of evaluating.</summary>
    [Parameter(Mandatory = true, ParameterSetName = ListSet)]
    public SwitchParameter ListTask { get; set; }

    /// <summary>With -ListTask: wildcards the listed names must match (default all).</summary>
    [Parameter(Position = 0, ParameterSetName = ListSet)]
    public string[] Name { get; set; } = { "*" };

    readonly Dictionary<(LoraModel Model, string Adapter), List<TaskResult>> scored = new();
    readonly DateTimeOffset started = DateTimeOffset.UtcNow;
    string? outFile;
    string? dataRoot;

    protected override void BeginProcessing()
    {
        if (ParameterSetName == ListSet) return;
        if (OutFile is not null)
        {
            outFile = GetUnresolvedFileSystemPath(OutFile);
            if (File.Exists(outFile) && !Force)
                ThrowTerminating(ErrorIds.ResultsFileExists, ErrorCategory.ResourceExists,
                    $"The results file '{outFile}' exists. Add -Force to overwrite it, or choose another -OutFile.", outFile);
        }
        if (DataRoot is not null) dataRoot = ResolveSingleExistingFileSystemPath(DataRoot, literal: false);
    }

    protected override void ProcessRecord()
    {
        if (ParameterSetName == ListSet)
        {
            foreach (var name in Resolve(Name)) WriteObject(name);
            return;
        }
        var tasks = Resolve(Task).Select(n => EvalTaskRegistry.Create(n, dataRoot))
            .Concat(TaskFile.SelectMany(f => ResolveExistingFileSystemPaths(f, literal: false)).Select(f => RunEngine(_ => EvalTaskRegistry.FromFile(f), f)))
            .ToList();
        if (tasks.Count == 0)
            ThrowTerminating(ErrorIds.InvalidArgument, ErrorCategory.InvalidArgument, "Name at least one task with -Task or -TaskFile (Invoke-LoraEval -ListTask lists them).");
        if (tasks.FirstOrDefault(t => t.RequiredHead != Model.Head) is { } wrong)
            ThrowTerminating(ErrorIds.ModelHeadMismatch, ErrorCategory.InvalidArgument,
                new ModelHeadMismatchException(wrong.Name, wrong.RequiredHead).Message + $" '{Model.Name}' has a {Model.Head} head.", Model);

        var adapters = Adapter.Length == 0 ? new string?[] { null } : (IncludeBase ? new string?[] { null } : Array.Empty<string?>()).Concat(Adapter).ToArray();
        var options = new EvaluationOptions
        {
            Limit = Limit > 0 ? Limit : null,
            NumFewshot = MyInvocation.BoundParameters.ContainsKey(nameof(NumFewshot)) ? NumFewshot : null,
            BatchSize = BatchSize, BootstrapIterations = BootstrapIterations,
        };
        foreach (var adapter in adapters) Evaluate(tasks, adapter, options);
    }

    void Evaluate(IReadOnlyList<EvalTask> tasks, string? adapter, EvaluationOptions options)
    {
        string label = adapter ?? EvalResult.BaseAdapter;
        using var selection = Select(adapter);
        using var progress = CreateProgress<EvalProgress>($"Evaluating {Model.Name} ({label})", p => new ProgressUpdate(
            $"{p.Task} ({p.TaskIndex + 1}/{p.TaskCount}): {p.Done} requests scored", 100 * p.TaskIndex / Math.Max(1, p.TaskCount)));
        using var results = Evaluator.Run(Model.Network, Model.Tokenizer, tasks, options, CancellationToken, progress).GetEnumerator();
        if (!scored.TryGetValue((Model, label), out var list)) scored[(Model, label)] = list = new List<TaskResult>();
        while (Next(results, label))
        {
            list.Add(results.Current);
            // Once stopping, the results file is written first: writing objects to a stopped pipeline throws.
            if (CancellationToken.IsCancellationRequested) WriteResultsFile();
            foreach (var record in EvalResult.From(results.Current, Model.Name, label)) WriteObject(record);
            if (!results.Current.Complete) break;
        }
        if (CancellationToken.IsCancellationRequested)
        {
            WriteResultsFile();
            throw new PipelineStoppedException();
        }
    }

    AdapterSelection Select(string? adapter)
    {
        try
        {
            return AdapterSelection.Use(Model, adapter);
        }
        catch (KeyNotFoundException e)
        {
            ThrowTerminating(ErrorIds.AdapterNotFound, ErrorCategory.ObjectNotFound, e.Message, adapter, e);
            throw;
        }
        catch (InvalidOperationException e)
        {
            ThrowTerminating(e, Model);
            throw;
        }
    }

    /// <summary>Advances the evaluation, turning the engine's evaluation-specific failures into their own ErrorIds.</summary>
    bool Next(IEnumerator<TaskResult> results, string adapter)
    {
        Exception? failure = null;
        bool moved = RunEngine(_ =>
        {
            try { return results.MoveNext(); }
            catch (Exception e) when (e is TaskDataNotFoundException or ModelHeadMismatchException) { failure = e; return false; }
        }, Model);
        switch (failure)
        {
            case TaskDataNotFoundException missing:
                ThrowTerminating(ErrorIds.TaskDataNotFound, ErrorCategory.ObjectNotFound, missing.Message, missing.Task, missing);
                break;
            case ModelHeadMismatchException head:
                ThrowTerminating(ErrorIds.ModelHeadMismatch, ErrorCategory.InvalidArgument, head.Message, adapter, head);
                break;
        }
        return moved;
    }

    IReadOnlyList<string> Resolve(IEnumerable<string> patterns)
    {
        try
        {
            return EvalTaskRegistry.Resolve(patterns);
        }
        catch (UnknownTaskException e)
        {
            ThrowTerminating(ErrorIds.UnknownTask, ErrorCategory.ObjectNotFound, e.Message, e.Name, e);
            throw;
        }
    }

    protected override void EndProcessing()
    {
        if (ParameterSetName == EvaluateSet) WriteResultsFile();
    }

    void WriteResultsFile()
    {
        if (outFile is null || scored.Count == 0) return;
        var ended = DateTimeOffset.UtcNow;
        foreach (var ((model, adapter), results) in scored)
        {
            var path = scored.Count == 1 ? outFile
                : Path.Combine(Path.GetDirectoryName(outFile)!, $"{Path.GetFileNameWithoutExtension(outFile)}.{Safe(model.Name)}.{(adapter == EvalResult.BaseAdapter ? "base" : Safe(adapter))}{Path.GetExtension(outFile)}");
            if (!ShouldProcess(path, "Write evaluation results")) continue;
            var options = new EvaluationOptions { Limit = Limit > 0 ? Limit : null, BatchSize = BatchSize, BootstrapIterations = BootstrapIterations };
            var document = EvalResultsFile.Build(results, model.Name, model.Path, adapter, options, model.ContextLength, started, ended);
            RunEngine(_ => EvalResultsFile.Write(path, document), path);
        }
        outFile = null;
    }

    static string Safe(string name) => string.Concat(name.Select(c => char.IsLetterOrDigit(c) || c is '-' or '_' ? c : '_'));
}
