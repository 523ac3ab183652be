using LoraPS.Data;
using LoraPS.Evaluation;
using Xunit;

namespace LoraPS.Tests.Evaluation;

/// <summary>Every metric against log-likelihoods chosen by hand, through a fake scorer (no model).</summary>
public sealed class MetricArithmeticTests
{
    /// <summary>Answers each (context, continuation) from a table; records what it was asked.</summary>
    sealed class FakeScorer(Dictionary<string, LoglikelihoodResult> table) : ILanguageModelScorer
    {
        public List<LoglikelihoodRequest> Asked { get; } = new();
        public IReadOnlyList<LoglikelihoodResult> Loglikelihood(IReadOnlyList<LoglikelihoodRequest> requests, CancellationToken cancellationToken = default)
        {
            Asked.AddRange(requests);
            return requests.Select(r => table[r.Context + "|" + r.Continuation]).ToList();
        }
        public IReadOnlyList<RollingLoglikelihood> LoglikelihoodRolling(IReadOnlyList<string> texts, CancellationToken cancellationToken = default) =>
            texts.Select(t => new RollingLoglikelihood(table[t].LogLikelihood, 0)).ToList();
        public IReadOnlyList<string> GenerateUntil(IReadOnlyList<GenerateUntilRequest> requests, CancellationToken cancellationToken = default) =>
            requests.Select(r => table[r.Context].IsGreedy ? "She has 3 + 4 = 7 left.\n#### 7" : "I think 1,234 or 8.").ToList();
        public int TruncatedRequests => 0;
    }

    static LoglikelihoodResult LL(double ll, bool greedy = false) => new(ll, greedy, 1);

    [Fact]
    public void AccAndAccNormPickTheArgmaxOfRawAndCharacterNormalizedLogLikelihoods()
    {
        // Doc 1: raw argmax = "ab" (−2 > −3), normalised: −2/2 = −1 vs −3/6 = −0.5 → "abcdef". Gold 1 → acc 0, acc_norm 1.
        // Doc 2: a tie (−1, −1) goes to index 0 = gold → acc 1; normalised −1/1 vs −1/2 → index 1 → acc_norm 0.
        var table = new Dictionary<string, LoglikelihoodResult>
        {
            ["Q1| ab"] = LL(-2), ["Q1| abcdef"] = LL(-3),
            ["Q2| x"] = LL(-1), ["Q2| yz"] = LL(-1),
        };
        var task = new MultipleChoiceTask("mc", 1.0, _ => new[]
        {
            new MultipleChoiceDoc("Q1", new[] { "ab", "abcdef" }, 1),
            new MultipleChoiceDoc("Q2", new[] { "x", "yz" }, 0),
        }, MultipleChoiceMetrics.AccuracyAndNormalized);
        var scorer = new FakeScorer(table);
        var result = task.Evaluate(new EvalContext { Scorer = scorer });

        Assert.Equal(new[] { " ab", " abcdef", " x", " yz" }, scorer.Asked.Select(a => a.Continuation));
        var acc = result.Metrics.Single(m => m.Name == "acc");
        var accNorm = result.Metrics.Single(m => m.Name == "acc_norm");
        Assert.Equal(0.5, acc.Value);
        Assert.Equal(0.5, accNorm.Value);
        // values {0, 1}: sample std = √0.5, / √2 = 0.5.
        Assert.Equal(0.5, acc.Stderr!.Value, 12);
        Assert.Equal(2, result.N);
    }

    [Fact]
    public void Mc2IsTheNormalizedProbabilityMassOnTheTrueAnswers()
    {
        // p ∝ e^−1, e^−2, e^−3 with the first two true: (e^−1 + e^−2) / (e^−1 + e^−2 + e^−3).
        var table = new Dictionary<string, LoglikelihoodResult> { ["Q| t1"] = LL(-1), ["Q| t2"] = LL(-2), ["Q| f"] = LL(-3) };
        var task = new MultipleChoiceTask("mc2", 3.0, _ => new[] { new MultipleChoiceDoc("Q", new[] { "t1", "t2", "f" }, 0, new[] { 1, 1, 0 }) },
            MultipleChoiceMetrics.TrueProbabilityMass);
        var result = task.Evaluate(new EvalContext { Scorer = new FakeScorer(table) });
        double expected = (Math.Exp(-1) + Math.Exp(-2)) / (Math.Exp(-1) + Math.Exp(-2) + Math.Exp(-3));
        var acc = Assert.Single(result.Metrics);
        Assert.Equal("acc", acc.Name);
        Assert.Equal(expected, acc.Value, 12);
        Assert.Null(acc.Stderr);   // one document: lm-eval writes "N/A"
    }

    [Fact]
    public void Mc2DoesNotUnderflowForVeryUnlikelyAnswers()
    {
        Assert.Equal(1 / (1 + Math.Exp(-1)), Metrics.Mc2(new[] { -2000.0, -2001.0 }, new[] { 1, 0 }), 12);
    }

    [Fact]
    public void LoglikelihoodAccIsGreedyMatchAndPerplexityIsExpOfMinusMeanLogLikelihood()
    {
        var table = new Dictionary<string, LoglikelihoodResult>
        {
            ["a|1"] = LL(-0.5, greedy: true), ["b|2"] = LL(-1.5, greedy: false), ["c|3"] = LL(-1.0, greedy: true),
        };
        var task = new LoglikelihoodTask("ll", 1.0, () => new[] { new LoglikelihoodRequest("a", "1"), new LoglikelihoodRequest("b", "2"), new LoglikelihoodRequest("c", "3") },
            reportPerplexity: true);
        var result = task.Evaluate(new EvalContext { Scorer = new FakeScorer(table), BootstrapIterations = 200 });
        var acc = result.Metrics.Single(m => m.Name == "acc");
        Assert.Equal(2.0 / 3, acc.Value, 12);
        // values {1, 0, 1}: mean 2/3, sample variance 1/3 → stderr √(1/3)/√3 = 1/3.
        Assert.Equal(1.0 / 3, acc.Stderr!.Value, 12);
        var ppl = result.Metrics.Single(m => m.Name == "perplexity");
        Assert.Equal(Math.Exp(1.0), ppl.Value, 12);
        Assert.False(ppl.HigherIsBetter);
        Assert.NotNull(ppl.Stderr);
    }

    [Fact]
    public void LimitScoresOnlyTheFirstDocuments()
    {
        var table = new Dictionary<string, LoglikelihoodResult> { ["a|1"] = LL(-1, true), ["b|2"] = LL(-1, false) };
        var task = new LoglikelihoodTask("ll", 1.0, () => new[] { new LoglikelihoodRequest("a", "1"), new LoglikelihoodRequest("b", "2") });
        var result = task.Evaluate(new EvalContext { Scorer = new FakeScorer(table), Limit = 1 });
        Assert.Equal(1, result.N);
        Assert.Equal(2, result.NOriginal);
        Assert.Equal(1.0, result.Metrics[0].Value);
    }

    [Fact]
    public void ACancelledRunReportsTheDocumentsWhoseChoicesWereAllScored()
    {
        // The scorer stops after three of four requests: only the first document is complete.
        var table = new Dictionary<string, LoglikelihoodResult> { ["Q1| a"] = LL(-1), ["Q1| b"] = LL(-2), ["Q2| a"] = LL(-3) };
        var partial = new PrefixScorer(new FakeScorer(table), 3);
        var task = new MultipleChoiceTask("mc", 1.0, _ => new[]
        {
            new MultipleChoiceDoc("Q1", new[] { "a", "b" }, 0), new MultipleChoiceDoc("Q2", new[] { "a", "b" }, 0),
        });
        var result = task.Evaluate(new EvalContext { Scorer = partial });
        Assert.False(result.Complete);
        Assert.Equal(1, result.N);
        Assert.Equal(1.0, result.Metrics[0].Value);
    }

    sealed class PrefixScorer(ILanguageModelScorer inner, int count) : ILanguageModelScorer
    {
        public IReadOnlyList<LoglikelihoodResult> Loglikelihood(IReadOnlyList<LoglikelihoodRequest> requests, CancellationToken cancellationToken = default) =>
            inner.Loglikelihood(requests.Take(count).ToList(), cancellationToken);
        public IReadOnlyList<RollingLoglikelihood> LoglikelihoodRolling(IReadOnlyList<string> texts, CancellationToken cancellationToken = default) => throw new NotSupportedException();
        public IReadOnlyList<string> GenerateUntil(IReadOnlyList<GenerateUntilRequest> requests, CancellationToken cancellationToken = default) => throw new NotSupportedException();
        public int TruncatedRequests => 0;
    }

    [Fact]
    public void WeightedPerplexitiesDivideTotalLogLikelihoodByWordsAndBytes()
    {
        // "one two three" = 3 words, 13 bytes; "é" = 1 word, 2 bytes. ll total −8.
        var table = new Dictionary<string, LoglikelihoodResult> { ["one two three"] = LL(-6), ["é"] = LL(-2) };
        var task = new PerplexityTask("ppl", () => new[] { "one two three", "é" }, "memory");
        var result = task.Evaluate(new EvalContext { Scorer = new FakeScorer(table) });
        Assert.Equal(Math.Exp(8.0 / 4), result.Metrics.Single(m => m.Name == "word_perplexity").Value, 12);
        Assert.Equal(Math.Exp(8.0 / 15), result.Metrics.Single(m => m.Name == "byte_perplexity").Value, 12);
        Assert.Equal(8.0 / 15 / Math.Log(2), result.Metrics.Single(m => m.Name == "bits_per_byte").Value, 12);
        Assert.All(result.Metrics, m => Assert.Null(m.Stderr));
    }

    [Fact]
    public void F1AndMatthewsCorrelationMatchTheConfusionMatrix()
    {
        // tp 2, fn 1, fp 1, tn 2.
        var pairs = new[] { (1, 1), (1, 1), (1, 0), (0, 1), (0, 0), (0, 0) };
        Assert.Equal(2.0 * 2 / (2 * 2 + 1 + 1), Metrics.F1(pairs), 12);
        Assert.Equal((2.0 * 2 - 1 * 1) / Math.Sqrt(3.0 * 3 * 3 * 3), Metrics.MatthewsCorrelation(pairs), 12);
        Assert.Equal(0, Metrics.MatthewsCorrelation(new[] { (1, 1), (0, 1) }));   // a constant prediction: undefined → 0
        var se = Metrics.BootstrapStderr(pairs, Metrics.F1, 2000);
        Assert.InRange(se!.Value, 0.05, 0.6);
        Assert.Equal(se, Metrics.BootstrapStderr(pairs, Metrics.F1, 2000));   // seeded
    }

    [Fact]
    public void Gsm8kExtractsTheFinalNumberWithBothFiltersAndIgnoresCommasDollarsAndCase()
    {
        Assert.Equal("7", Gsm8kTask.Extract("3 + 4 = 7\n#### 7", strict: true));
        Assert.Equal("[invalid]", Gsm8kTask.Extract("The answer is 7.", strict: true));
        Assert.Equal("7.", Gsm8kTask.Extract("It costs $5 then 7.", strict: false));
        Assert.True(Gsm8kTask.ExactMatch("7.", "Janet has 3+4=7 eggs.\n#### 7"));
        Assert.True(Gsm8kTask.ExactMatch("$1,234", "#### 1234"));
        Assert.False(Gsm8kTask.ExactMatch("[invalid]", "#### 7"));

        var table = new Dictionary<string, LoglikelihoodResult>();
        var problems = new[] { new MathWordProblem("Q1", "a\n#### 7"), new MathWordProblem("Q2", "b\n#### 8") };
        foreach (var (p, greedy) in problems.Zip(new[] { true, false }))
            table[Gsm8kTask.Context(p, problems.Take(1).ToList())] = LL(0, greedy);
        var result = new Gsm8kTask(() => problems, () => problems).Evaluate(new EvalContext { Scorer = new FakeScorer(table), NumFewshot = 1 });
        Assert.Equal(0.5, result.Metrics.Single(m => m.Filter == "strict-match").Value);      // doc 1 "#### 7" right; doc 2 invalid
        Assert.Equal(1.0, result.Metrics.Single(m => m.Filter == "flexible-extract").Value);  // last numbers "7" and "8." (→ "8") both right
    }

    [Fact]
    public void RollingWindowsPredictEveryTokenOnceWithAsMuchContextAsFits()
    {
        var tokens = Enumerable.Range(10, 10).ToArray();
        var windows = CausalLmScorer.RollingWindows(tokens, prefixToken: 1, maxLength: 4);
        Assert.Equal(tokens, windows.SelectMany(w => w.Continuation));
        Assert.Equal(new[] { 1 }, windows[0].Context);
        Assert.Equal(new[] { 10, 11, 12, 13 }, windows[0].Continuation);
        Assert.Equal(new[] { 13 }, windows[1].Context);               // input [13,14,15,16] predicts 14..17
        Assert.Equal(new[] { 14, 15, 16, 17 }, windows[1].Continuation);
        Assert.Equal(new[] { 15, 16, 17 }, windows[2].Context);       // input [15,16,17,18] predicts 18, 19
        Assert.All(windows, w => Assert.True(w.Context.Length + w.Continuation.Length - 1 <= 4));
    }
}
