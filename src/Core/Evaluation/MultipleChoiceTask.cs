namespace LoraPS.Evaluation;

/// <summary>One multiple-choice document: the prompt, the choices (without the delimiter) and the gold index.
/// <paramref name="Labels"/> (1 = true) is for TruthfulQA's mc2, where several answers are true.</summary>
public sealed record MultipleChoiceDoc(string Context, IReadOnlyList<string> Choices, int Gold, IReadOnlyList<int>? Labels = null);

/// <summary>Which figures a multiple-choice task reports.</summary>
public enum MultipleChoiceMetrics
{
    /// <summary><c>acc</c> only (BLiMP, MMLU, TruthfulQA mc1).</summary>
    Accuracy,
    /// <summary><c>acc</c> and <c>acc_norm</c> (lm-eval's defaults for a multiple_choice task).</summary>
    AccuracyAndNormalized,
    /// <summary>TruthfulQA mc2: <c>acc</c> = normalised probability mass on the true answers.</summary>
    TrueProbabilityMass,
}

/// <summary>
/// lm-eval's <c>multiple_choice</c> output type: one request <c>(context, delimiter + choice)</c> per choice; the
/// most likely choice is the answer.
/// </summary>
public sealed class MultipleChoiceTask : EvalTask
{
    readonly Func<int, IReadOnlyList<MultipleChoiceDoc>> load;
    readonly IReadOnlyDictionary<string, object?> extraConfig;

    /// <param name="name">Task name.</param>
    /// <param name="version">lm-eval's task version.</param>
    /// <param name="load">The evaluation documents, with prompts built for the given few-shot count.</param>
    /// <param name="metrics">What to report.</param>
    /// <param name="targetDelimiter">Put between context and choice (lm-eval default " ").</param>
    /// <param name="maxFewshot">Few-shot examples the data has (0 = none).</param>
    /// <param name="extraConfig">More entries for the results file's task config.</param>
    public MultipleChoiceTask(string name, double version, Func<int, IReadOnlyList<MultipleChoiceDoc>> load,
        MultipleChoiceMetrics metrics = MultipleChoiceMetrics.Accuracy, string targetDelimiter = " ", int maxFewshot = 0,
        IReadOnlyDictionary<string, object?>? extraConfig = null) : base(name)
    {
        Version = version;
        this.load = load;
        Scoring = metrics;
        TargetDelimiter = targetDelimiter;
        MaxFewshot = maxFewshot;
        this.extraConfig = extraConfig ?? new Dictionary<string, object?>();
    }

    public override double Version { get; }
    public override string OutputType => "multiple_choice";
    public override int MaxFewshot { get; }
    public MultipleChoiceMetrics Scoring { get; }
    public string TargetDelimiter { get; }

    protected override TaskResult Run(EvalContext context, int numFewshot)
    {
        var scorer = context.RequireScorer(this);
        var all = load(numFewshot);
        var docs = context.Limited(all);
        int truncatedBefore = scorer.TruncatedRequests;
        var requests = docs.SelectMany(d => d.Choices.Select(c => new LoglikelihoodRequest(d.Context, TargetDelimiter + c))).ToList();
        var results = scorer.Loglikelihood(requests, context.CancellationToken);

        var acc = new List<double>();
        var accNorm = new List<double>();
        int offset = 0;
        foreach (var doc in docs)
        {
            if (offset + doc.Choices.Count > results.Count) break;
            var lls = results.Skip(offset).Take(doc.Choices.Count).Select(r => r.LogLikelihood).ToList();
            offset += doc.Choices.Count;
            if (Scoring == MultipleChoiceMetrics.TrueProbabilityMass)
            {
                acc.Add(Metrics.Mc2(lls, doc.Labels ?? throw new InvalidOperationException($"{Name}: mc2 needs labels.")));
                continue;
            }
            acc.Add(Metrics.Accuracy(lls, doc.Gold));
            accNorm.Add(Metrics.NormalizedAccuracy(lls, doc.Choices, doc.Gold));
        }

        var metrics = new List<EvalMetric> { new("acc", Metrics.Mean(acc), Metrics.MeanStderr(acc)) };
        if (Scoring == MultipleChoiceMetrics.AccuracyAndNormalized)
            metrics.Add(new EvalMetric("acc_norm", Metrics.Mean(accNorm), Metrics.MeanStderr(accNorm)));
        var config = BaseConfig(numFewshot, metrics.Select(m => m.Name));
        config["target_delimiter"] = TargetDelimiter;
        config["fewshot_delimiter"] = "\n\n";
        foreach (var (k, v) in extraConfig) config[k] = v;
        return new TaskResult
        {
            Task = Name, Version = Version, OutputType = OutputType, NumFewshot = numFewshot, N = acc.Count, NOriginal = all.Count,
            Truncated = scorer.TruncatedRequests - truncatedBefore, Complete = acc.Count == docs.Count, Metrics = metrics, Config = config,
        };
    }
}
