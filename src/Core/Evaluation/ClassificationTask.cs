using LoraPS.Data;
using LoraPS.Models;

namespace LoraPS.Evaluation;

/// <summary>
/// A GLUE-style task for sequence-classification models (SST-2, CoLA, MRPC): <c>acc</c> (mean, closed-form stderr),
/// <c>f1</c> (binary, class 1 positive) and <c>mcc</c> (Matthews correlation), the last two with bootstrap stderr
/// as lm-eval computes it for non-mean metrics.
/// </summary>
public sealed class ClassificationTask : EvalTask
{
    readonly Func<IReadOnlyList<ClassificationExample>> load;
    readonly string source;

    public ClassificationTask(string name, Func<IReadOnlyList<ClassificationExample>> load, string source) : base(name)
    {
        this.load = load;
        this.source = source;
    }

    public override double Version => 1.0;
    public override string OutputType => "classification";
    public override ModelHeadKind RequiredHead => ModelHeadKind.SequenceClassification;

    protected override TaskResult Run(EvalContext context, int numFewshot)
    {
        var classifier = context.RequireClassifier(this);
        var all = load();
        var docs = context.Limited(all);
        int truncatedBefore = classifier.TruncatedExamples;
        var predictions = classifier.Predict(docs, context.CancellationToken);
        var pairs = predictions.Select((p, i) => (docs[i].Label, p)).ToList();
        var acc = pairs.Select(p => p.Label == p.p ? 1.0 : 0.0).ToList();
        var metrics = new List<EvalMetric>
        {
            new("acc", Metrics.Mean(acc), Metrics.MeanStderr(acc)),
            new("f1", Metrics.F1(pairs), Metrics.BootstrapStderr(pairs, Metrics.F1, context.BootstrapIterations)),
            new("mcc", Metrics.MatthewsCorrelation(pairs), Metrics.BootstrapStderr(pairs, Metrics.MatthewsCorrelation, context.BootstrapIterations)),
        };
        return new TaskResult
        {
            Task = Name, Version = Version, OutputType = OutputType, NumFewshot = numFewshot, N = pairs.Count, NOriginal = all.Count,
            Truncated = classifier.TruncatedExamples - truncatedBefore, Complete = pairs.Count == docs.Count, Metrics = metrics,
            Config = BaseConfig(numFewshot, metrics.Select(m => m.Name), source),
        };
    }
}
