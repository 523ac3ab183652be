using LoraPS.Models;

namespace LoraPS.Evaluation;

/// <summary>Settings of one evaluation run (lm-eval's <c>simple_evaluate</c> arguments).</summary>
public sealed record EvaluationOptions
{
    /// <summary>Score only the first N documents of each task.</summary>
    public int? Limit { get; init; }
    /// <summary>Few-shot examples per prompt; null = each task's default.</summary>
    public int? NumFewshot { get; init; }
    public int BatchSize { get; init; } = 16;
    /// <summary>Resamples for bootstrap standard errors (F1, MCC, perplexity).</summary>
    public int BootstrapIterations { get; init; } = 100_000;
    /// <summary>Encode with the tokenizer's special tokens (BOS), as current lm-eval.</summary>
    public bool AddSpecialTokens { get; init; } = true;
    /// <summary>Override of the model's maximum length.</summary>
    public int? MaxLength { get; init; }
}

/// <summary>Where an evaluation is: the task, and requests (or examples) finished in it.</summary>
public readonly record struct EvalProgress(string Task, int TaskIndex, int TaskCount, int Done);

/// <summary>One metric of one task for one model/adapter: the object Invoke-LoraEval writes.</summary>
public sealed record EvalResult(string Task, string Metric, double Value, double? Stderr, int N, string Model, string Adapter,
    int NumFewshot, int Truncated, string Filter = "none", bool Complete = true)
{
    /// <summary>The adapter column for the base model (adapters disabled).</summary>
    public const string BaseAdapter = "(base)";

    public static IEnumerable<EvalResult> From(TaskResult result, string model, string adapter) =>
        result.Metrics.Select(m => new EvalResult(result.Task, m.Filter == "none" ? m.Name : $"{m.Name},{m.Filter}", m.Value, m.Stderr,
            result.N, model, adapter, result.NumFewshot, result.Truncated, m.Filter, result.Complete));
}

/// <summary>Runs tasks on a model, one after another, with the scorer its head calls for.</summary>
public static class Evaluator
{
    /// <summary>
    /// Evaluates <paramref name="tasks"/> in order, yielding each result as soon as its task finishes. When
    /// <paramref name="cancellationToken"/> fires, the task in progress yields what it scored (Complete = false) and
    /// no further task starts.
    /// </summary>
    /// <exception cref="ModelHeadMismatchException">A task needs a head the model does not have.</exception>
    public static IEnumerable<TaskResult> Run(TransformerModel model, Tokenization.TextTokenizer tokenizer, IReadOnlyList<EvalTask> tasks,
        EvaluationOptions? options = null, CancellationToken cancellationToken = default, IProgress<EvalProgress>? progress = null)
    {
        options ??= new EvaluationOptions();
        foreach (var task in tasks)
            if (task.RequiredHead != model.HeadKind) throw new ModelHeadMismatchException(task.Name, task.RequiredHead);

        for (int i = 0; i < tasks.Count; i++)
        {
            if (cancellationToken.IsCancellationRequested) yield break;
            var task = tasks[i];
            int index = i;
            var report = new Progress(done => progress?.Report(new EvalProgress(task.Name, index, tasks.Count, done)));
            var context = new EvalContext
            {
                Scorer = model.HeadKind == ModelHeadKind.CausalLM
                    ? new CausalLmScorer(model, tokenizer, new ScorerOptions { BatchSize = options.BatchSize, MaxLength = options.MaxLength, AddSpecialTokens = options.AddSpecialTokens, Progress = report })
                    : null,
                Classifier = model.HeadKind == ModelHeadKind.SequenceClassification ? new SequenceClassifier(model, tokenizer, options.BatchSize, report) : null,
                Limit = options.Limit, NumFewshot = options.NumFewshot, BootstrapIterations = options.BootstrapIterations,
                CancellationToken = cancellationToken,
            };
            progress?.Report(new EvalProgress(task.Name, index, tasks.Count, 0));
            yield return task.Evaluate(context);
        }
    }

    sealed class Progress(Action<int> report) : IProgress<int>
    {
        public void Report(int value) => report(value);
    }
}
