namespace LoraPS.Evaluation;

/// <summary>
/// lm-eval's <c>loglikelihood</c> output type: one <c>(context, continuation)</c> per document. <c>acc</c> is
/// <c>is_greedy</c> — whether greedy decoding reproduces the whole continuation (the arithmetic tasks' metric);
/// optionally <c>perplexity</c> = exp(−mean log-likelihood) with a bootstrap standard error.
/// </summary>
public sealed class LoglikelihoodTask : EvalTask
{
    readonly Func<IReadOnlyList<LoglikelihoodRequest>> load;
    readonly IReadOnlyDictionary<string, object?> extraConfig;

    public LoglikelihoodTask(string name, double version, Func<IReadOnlyList<LoglikelihoodRequest>> load, bool reportPerplexity = false,
        IReadOnlyDictionary<string, object?>? extraConfig = null) : base(name)
    {
        Version = version;
        this.load = load;
        ReportPerplexity = reportPerplexity;
        this.extraConfig = extraConfig ?? new Dictionary<string, object?>();
    }

    public override double Version { get; }
    public override string OutputType => "loglikelihood";
    public bool ReportPerplexity { get; }

    protected override TaskResult Run(EvalContext context, int numFewshot)
    {
        var scorer = context.RequireScorer(this);
        var all = load();
        var docs = context.Limited(all);
        int truncatedBefore = scorer.TruncatedRequests;
        var results = scorer.Loglikelihood(docs, context.CancellationToken);
        var acc = results.Select(r => r.IsGreedy ? 1.0 : 0.0).ToList();
        var metrics = new List<EvalMetric> { new("acc", Metrics.Mean(acc), Metrics.MeanStderr(acc)) };
        if (ReportPerplexity)
        {
            var lls = results.Select(r => r.LogLikelihood).ToList();
            metrics.Add(new EvalMetric("perplexity", Metrics.Perplexity(lls),
                Metrics.BootstrapStderr(lls, Metrics.Perplexity, context.BootstrapIterations), HigherIsBetter: false));
        }
        var config = BaseConfig(numFewshot, metrics.Select(m => m.Name));
        config["target_delimiter"] = "";
        foreach (var (k, v) in extraConfig) config[k] = v;
        return new TaskResult
        {
            Task = Name, Version = Version, OutputType = OutputType, NumFewshot = numFewshot, N = results.Count, NOriginal = all.Count,
            Truncated = scorer.TruncatedRequests - truncatedBefore, Complete = results.Count == docs.Count, Metrics = metrics, Config = config,
        };
    }
}
