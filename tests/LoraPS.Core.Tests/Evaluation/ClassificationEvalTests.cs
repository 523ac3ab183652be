using LoraPS.Data;
using LoraPS.Evaluation;
using LoraPS.Models;
using Xunit;

namespace LoraPS.Tests.Evaluation;

/// <summary>GLUE-style tasks on stories260K with a (randomly initialised) sequence-classification head.</summary>
public sealed class ClassificationEvalTests : IClassFixture<ClassificationEvalTests.Classifier>
{
    public sealed class Classifier : IDisposable
    {
        public LoraModel Model { get; } = LoraModel.Load(LoraModel.BundledModelPath, head: ModelHeadKind.SequenceClassification, numLabels: 2);
        public void Dispose() => Model.Dispose();
    }

    readonly LoraModel model;
    public ClassificationEvalTests(Classifier classifier) => model = classifier.Model;

    [Fact]
    public void BatchedPredictionsEqualOneAtATimeAndTheMetricsFollowFromThem()
    {
        var task = EvalTaskRegistry.Create("sst2");
        var result = Evaluator.Run(model.Network, model.Tokenizer, new[] { task }, new EvaluationOptions { Limit = 12, BatchSize = 5, BootstrapIterations = 100 }).Single();

        var examples = File.ReadLines(Path.Combine(TaskData.BundledRoot, "glue", "sst2", "test.tsv")).Skip(1).Take(12)
            .Select(l => l.Split('\t')).Select(f => new ClassificationExample(f[0], null, int.Parse(f[1]))).ToList();
        var single = new SequenceClassifier(model.Network, model.Tokenizer, batchSize: 1).Predict(examples);
        var batched = new SequenceClassifier(model.Network, model.Tokenizer, batchSize: 5).Predict(examples);
        Assert.Equal(single, batched);   // padding does not change a prediction

        var pairs = examples.Select((e, i) => (e.Label, single[i])).ToList();
        Assert.Equal(12, result.N);
        Assert.Equal(872, result.NOriginal);
        Assert.Equal(pairs.Count(p => p.Label == p.Item2) / 12.0, result.Metrics.Single(m => m.Name == "acc").Value, 12);
        Assert.Equal(Metrics.F1(pairs), result.Metrics.Single(m => m.Name == "f1").Value, 12);
        Assert.Equal(Metrics.MatthewsCorrelation(pairs), result.Metrics.Single(m => m.Name == "mcc").Value, 12);
    }

    [Fact]
    public void ColaAndMrpcReadTheirFiles()
    {
        var options = new EvaluationOptions { Limit = 3, BootstrapIterations = 10 };
        var results = Evaluator.Run(model.Network, model.Tokenizer, new[] { EvalTaskRegistry.Create("cola"), EvalTaskRegistry.Create("mrpc") }, options).ToList();
        Assert.Equal(new[] { 516, 1725 }, results.Select(r => r.NOriginal));
        Assert.All(results, r => Assert.Equal(3, r.N));
    }

    [Fact]
    public void ALanguageModelTaskOnAClassifierSaysWhichHeadItNeeds()
    {
        var e = Assert.Throws<ModelHeadMismatchException>(() =>
            Evaluator.Run(model.Network, model.Tokenizer, new[] { EvalTaskRegistry.Create("blimp_causative") }).ToList());
        Assert.Equal(ModelHeadKind.CausalLM, e.Needed);
        Assert.Contains("causal language model", e.Message);
    }
}
