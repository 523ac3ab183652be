using System.Text;

namespace LoraPS.Evaluation;

/// <summary>
/// lm-eval's <c>loglikelihood_rolling</c> output type (wikitext-style): each document's whole log-likelihood in
/// disjoint context windows, aggregated as <c>word_perplexity</c>, <c>byte_perplexity</c> and <c>bits_per_byte</c>
/// (weighted by words and UTF-8 bytes; no standard error, as lm-eval).
/// </summary>
public sealed class PerplexityTask : EvalTask
{
    readonly Func<IReadOnlyList<string>> load;
    readonly string source;

    public PerplexityTask(string name, Func<IReadOnlyList<string>> load, string source) : base(name)
    {
        this.load = load;
        this.source = source;
    }

    public override double Version => 1.0;
    public override string OutputType => "loglikelihood_rolling";

    protected override TaskResult Run(EvalContext context, int numFewshot)
    {
        var scorer = context.RequireScorer(this);
        var all = load();
        var docs = context.Limited(all);
        int truncatedBefore = scorer.TruncatedRequests;
        var results = scorer.LoglikelihoodRolling(docs, context.CancellationToken);
        var words = results.Select((r, i) => (r.LogLikelihood, (double)Metrics.WordCount(docs[i]))).ToList();
        var bytes = results.Select((r, i) => (r.LogLikelihood, (double)Encoding.UTF8.GetByteCount(docs[i]))).ToList();
        var metrics = results.Count == 0 ? new List<EvalMetric>() : new List<EvalMetric>
        {
            new("word_perplexity", Metrics.WeightedPerplexity(words), null, HigherIsBetter: false),
            new("byte_perplexity", Metrics.WeightedPerplexity(bytes), null, HigherIsBetter: false),
            new("bits_per_byte", Metrics.BitsPerByte(bytes), null, HigherIsBetter: false),
        };
        return new TaskResult
        {
            Task = Name, Version = Version, OutputType = OutputType, NumFewshot = numFewshot, N = results.Count, NOriginal = all.Count,
            Truncated = scorer.TruncatedRequests - truncatedBefore, Complete = results.Count == docs.Count, Metrics = metrics,
            Config = BaseConfig(numFewshot, new[] { "word_perplexity", "byte_perplexity", "bits_per_byte" }, source),
        };
    }
}
