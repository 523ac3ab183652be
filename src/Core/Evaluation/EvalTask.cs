using LoraPS.Models;

namespace LoraPS.Evaluation;

/// <summary>One reported figure: lm-eval's <c>"&lt;metric&gt;,&lt;filter&gt;"</c> and its standard error (null = "N/A").</summary>
public sealed record EvalMetric(string Name, double Value, double? Stderr, bool HigherIsBetter = true, string Filter = "none");

/// <summary>The outcome of one task: its metrics and what they were computed over.</summary>
public sealed record TaskResult
{
    public required string Task { get; init; }
    public required double Version { get; init; }
    public required string OutputType { get; init; }
    public required int NumFewshot { get; init; }
    /// <summary>Documents scored (lm-eval's <c>n-samples.effective</c>).</summary>
    public required int N { get; init; }
    /// <summary>Documents in the evaluation split (<c>n-samples.original</c>).</summary>
    public required int NOriginal { get; init; }
    /// <summary>Requests whose context was left-truncated to fit the model.</summary>
    public int Truncated { get; init; }
    /// <summary>False when evaluation was cancelled before every (limited) document was scored.</summary>
    public bool Complete { get; init; } = true;
    public required IReadOnlyList<EvalMetric> Metrics { get; init; }
    /// <summary>The task's configuration, written under <c>configs.&lt;task&gt;</c> in the results file.</summary>
    public required IReadOnlyDictionary<string, object?> Config { get; init; }
}

/// <summary>What a task runs with: the scorer for its model, the document limit, few-shot count, cancellation.</summary>
public sealed class EvalContext
{
    public ILanguageModelScorer? Scorer { get; init; }
    public SequenceClassifier? Classifier { get; init; }
    /// <summary>Score only the first N documents (lm-eval's <c>--limit</c>).</summary>
    public int? Limit { get; init; }
    /// <summary>Few-shot examples per prompt; null = the task's default.</summary>
    public int? NumFewshot { get; init; }
    /// <summary>Resamples for bootstrap standard errors (lm-eval's <c>bootstrap_iters</c>, default 100000).</summary>
    public int BootstrapIterations { get; init; } = 100_000;
    public CancellationToken CancellationToken { get; init; }

    internal ILanguageModelScorer RequireScorer(EvalTask task) => Scorer ?? throw new ModelHeadMismatchException(task.Name, ModelHeadKind.CausalLM);
    internal SequenceClassifier RequireClassifier(EvalTask task) => Classifier ?? throw new ModelHeadMismatchException(task.Name, ModelHeadKind.SequenceClassification);

    internal IReadOnlyList<T> Limited<T>(IReadOnlyList<T> docs) => Limit is int n && n < docs.Count ? docs.Take(n).ToList() : docs;
}

/// <summary>A task needs a model head (causal LM or sequence classification) that the model does not have.</summary>
public sealed class ModelHeadMismatchException(string task, ModelHeadKind needed)
    : InvalidOperationException($"The task '{task}' needs a {(needed == ModelHeadKind.CausalLM ? "causal language model (*ForCausalLM)" : "sequence-classification model (*ForSequenceClassification; Import-LoraModel -Head SequenceClassification)")}; the model given has another head.")
{
    public string Task { get; } = task;
    public ModelHeadKind Needed { get; } = needed;
}

/// <summary>
/// An evaluation task in lm-eval's sense: documents, how each becomes requests, and how results become metrics.
/// </summary>
public abstract class EvalTask
{
    protected EvalTask(string name) => Name = name;

    public string Name { get; }
    public abstract double Version { get; }
    /// <summary><c>multiple_choice</c>, <c>loglikelihood</c>, <c>loglikelihood_rolling</c>, <c>generate_until</c> or <c>classification</c>.</summary>
    public abstract string OutputType { get; }
    /// <summary>The head this task needs.</summary>
    public virtual ModelHeadKind RequiredHead => ModelHeadKind.CausalLM;
    public virtual int DefaultFewshot => 0;
    /// <summary>The largest few-shot count the task's data supports (0 = no few-shot split).</summary>
    public virtual int MaxFewshot => 0;

    public TaskResult Evaluate(EvalContext context)
    {
        int shots = context.NumFewshot ?? DefaultFewshot;
        if (shots < 0 || shots > MaxFewshot)
            throw new ArgumentException(MaxFewshot == 0
                ? $"The task '{Name}' has no few-shot split; use -NumFewshot 0."
                : $"The task '{Name}' supports 0 to {MaxFewshot} few-shot examples; got {shots}.");
        return Run(context, shots);
    }

    protected abstract TaskResult Run(EvalContext context, int numFewshot);

    protected Dictionary<string, object?> BaseConfig(int numFewshot, IEnumerable<string> metrics, object? datasetPath = null) => new()
    {
        ["task"] = Name,
        ["dataset_path"] = datasetPath,
        ["output_type"] = OutputType,
        ["num_fewshot"] = numFewshot,
        ["metric_list"] = metrics.Select(m => new Dictionary<string, object?> { ["metric"] = m }).ToList(),
        ["metadata"] = new Dictionary<string, object?> { ["version"] = Version },
    };

    public override string ToString() => Name;
}
