using LoraPS.Evaluation;
using LoraPS.Models;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LoraPS.Tests.Evaluation;

/// <summary>
/// The batched engine on the real stories260K against an independent computation: one unbatched forward pass per
/// request over the plain token sequence, with no sorting, padding or shared rows.
/// </summary>
public sealed class ScorerReferenceTests : IClassFixture<ScorerReferenceTests.Stories>
{
    public sealed class Stories : IDisposable
    {
        public LoraModel Model { get; } = LoraModel.Load(LoraModel.BundledModelPath);
        public void Dispose() => Model.Dispose();
    }

    readonly LoraModel model;
    public ScorerReferenceTests(Stories stories) => model = stories.Model;

    /// <summary>Σ log p(continuation token | everything before it), argmax check, by a single forward of (ctx+cont)[:-1].</summary>
    (double LogLikelihood, bool Greedy) Naive(int[] context, int[] continuation)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var whole = context.Concat(continuation).Select(t => (long)t).ToArray();
        var input = tensor(whole[..^1]).unsqueeze(0);
        var logProbs = model.Network.Forward(input).Logits![0].log_softmax(-1);
        double sum = 0;
        bool greedy = true;
        for (int k = 0; k < continuation.Length; k++)
        {
            int position = context.Length - 1 + k;
            sum += logProbs[position, continuation[k]].item<float>();
            greedy &= logProbs[position].argmax().item<long>() == continuation[k];
        }
        return (sum, greedy);
    }

    [Fact]
    public void TheSplitFollowsLmEval()
    {
        var scorer = new CausalLmScorer(model.Network, model.Tokenizer);
        // Trailing whitespace moves to the continuation; the context keeps the tokenizer's BOS.
        var (ctx, cont) = scorer.EncodePair("Question: What is 2 plus 3?\nAnswer: ", "5");
        var whole = model.Tokenizer.Encode("Question: What is 2 plus 3?\nAnswer: 5");
        Assert.Equal(whole, ctx.Concat(cont));
        Assert.Equal(model.Tokenizer.Encode("Question: What is 2 plus 3?\nAnswer:"), ctx);
        Assert.Equal(1, ctx[0]);
        // An empty context is the prefix token (BOS = 1) alone.
        var (empty, sentence) = scorer.EncodePair("", " The cat sat.");
        Assert.Equal(new[] { 1 }, empty);
        Assert.Equal(model.Tokenizer.Encode(" The cat sat.", addSpecialTokens: false), sentence);
    }

    [Theory]
    [InlineData("blimp_causative", 12)]
    [InlineData("mmlu_global_facts", 4)]
    [InlineData("truthfulqa_mc2", 2)]
    [InlineData("arithmetic_2ds", 12)]
    public void BatchedScoresMatchANaivePerRequestForwardPass(string taskName, int docs)
    {
        var requests = Requests(taskName, docs);
        var scorer = new CausalLmScorer(model.Network, model.Tokenizer, new ScorerOptions { BatchSize = 5 });
        var batched = scorer.Loglikelihood(requests);
        Assert.Equal(requests.Count, batched.Count);
        for (int i = 0; i < requests.Count; i++)
        {
            var (ctx, cont) = scorer.EncodePair(requests[i].Context, requests[i].Continuation);
            var (ll, greedy) = Naive(ctx, cont);
            Assert.True(Math.Abs(ll - batched[i].LogLikelihood) < 1e-4, $"{taskName} request {i}: naive {ll} vs batched {batched[i].LogLikelihood}");
            Assert.Equal(greedy, batched[i].IsGreedy);
        }
        if (taskName.StartsWith("mmlu")) Assert.Equal(docs, scorer.ForwardRows);   // " A".." D" share one row per question
    }

    [Fact]
    public void ScoresAreDeterministicAndIndependentOfBatchSize()
    {
        var requests = Requests("blimp_anaphor_number_agreement", 10);
        var one = new CausalLmScorer(model.Network, model.Tokenizer, new ScorerOptions { BatchSize = 1 }).Loglikelihood(requests);
        var seven = new CausalLmScorer(model.Network, model.Tokenizer, new ScorerOptions { BatchSize = 7 }).Loglikelihood(requests);
        var again = new CausalLmScorer(model.Network, model.Tokenizer, new ScorerOptions { BatchSize = 7 }).Loglikelihood(requests);
        Assert.Equal(seven, again);
        for (int i = 0; i < requests.Count; i++) Assert.Equal(one[i].LogLikelihood, seven[i].LogLikelihood, 4);
    }

    [Fact]
    public void ContextsLongerThanTheModelAreLeftTruncatedAndCounted()
    {
        var scorer = new CausalLmScorer(model.Network, model.Tokenizer, new ScorerOptions { MaxLength = 16 });
        var longContext = string.Join(" ", Enumerable.Repeat("Once upon a time there was a cat.", 6));
        var requests = new[] { new LoglikelihoodRequest(longContext, " The end."), new LoglikelihoodRequest("Hi", " there") };
        var results = scorer.Loglikelihood(requests);
        Assert.Equal(1, scorer.TruncatedRequests);
        var (ctx, cont) = scorer.EncodePair(longContext, " The end.");
        var whole = ctx.Concat(cont).ToArray()[^17..];   // lm-eval keeps the last max_len + 1 tokens
        var (ll, _) = Naive(whole[..^cont.Length], cont);
        Assert.Equal(ll, results[0].LogLikelihood, 4);
    }

    [Fact]
    public void RollingLoglikelihoodOfAShortTextIsItsScoreAfterBos()
    {
        const string text = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball.";
        var scorer = new CausalLmScorer(model.Network, model.Tokenizer);
        var rolling = Assert.Single(scorer.LoglikelihoodRolling(new[] { text }));
        var tokens = model.Tokenizer.Encode(text, addSpecialTokens: false).ToArray();
        Assert.Equal(Naive(new[] { 1 }, tokens).LogLikelihood, rolling.LogLikelihood, 4);
        Assert.True(tokens.Length > 16);
        // With an 8-token window the same tokens are scored with less context: a different, finite total.
        var windowed = new CausalLmScorer(model.Network, model.Tokenizer, new ScorerOptions { MaxLength = 8 }).LoglikelihoodRolling(new[] { text });
        Assert.NotEqual(rolling.LogLikelihood, windowed[0].LogLikelihood);
        Assert.True(double.IsFinite(windowed[0].LogLikelihood));
    }

    [Fact]
    public void GenerationStopsAtTheFirstStopSequenceOfTheGreedyText()
    {
        var greedy = LoraPS.Generation.TextGenerator.Generate(model.Network, model.Tokenizer,
            new LoraPS.Generation.GenerationRequest { Prompt = "Once upon a time", MaxNewTokens = 40 }).Completion;
        var scorer = new CausalLmScorer(model.Network, model.Tokenizer);
        var cut = Assert.Single(scorer.GenerateUntil(new[] { new GenerateUntilRequest("Once upon a time", new[] { "." }, 40) }));
        Assert.Equal(greedy[..greedy.IndexOf('.')], cut);

        var problem = new MathWordProblem("Lily has 2 apples and gets 3 more. How many apples does she have?", "2 + 3 = 5\n#### 5");
        var result = new Gsm8kTask(() => new[] { problem }, () => new[] { problem }) { MaxGenTokens = 8 }
            .Evaluate(new EvalContext { Scorer = scorer, NumFewshot = 1 });
        Assert.Equal(1, result.N);
        Assert.Equal(new[] { "strict-match", "flexible-extract" }, result.Metrics.Select(m => m.Filter));
    }

    [Fact]
    public void ACancelledScorerReturnsAPrefix()
    {
        var requests = Requests("blimp_causative", 40);   // 80 requests: more than one chunk of 8 batches of 5
        using var cancel = new CancellationTokenSource();
        int reports = 0;
        var scorer = new CausalLmScorer(model.Network, model.Tokenizer, new ScorerOptions
        {
            BatchSize = 5, Progress = new Progress(() => { if (++reports == 1) cancel.Cancel(); }),
        });
        var partial = scorer.Loglikelihood(requests, cancel.Token);
        Assert.Equal(40, partial.Count);   // the first chunk (8 batches × 5), in request order
        var full = new CausalLmScorer(model.Network, model.Tokenizer, new ScorerOptions { BatchSize = 5 }).Loglikelihood(requests);
        Assert.Equal(full.Take(40), partial);
    }

    sealed class Progress(Action report) : IProgress<int>
    {
        public void Report(int value) => report();
    }

    [Fact]
    public void TaskScoresOnStoriesAreReproducible()
    {
        var task = EvalTaskRegistry.Create("blimp_causative");
        var context = new EvalContext { Scorer = new CausalLmScorer(model.Network, model.Tokenizer), Limit = 20 };
        var first = task.Evaluate(context);
        var second = task.Evaluate(new EvalContext { Scorer = new CausalLmScorer(model.Network, model.Tokenizer, new ScorerOptions { BatchSize = 3 }), Limit = 20 });
        Assert.Equal(first.Metrics[0].Value, second.Metrics[0].Value);
        Assert.Equal(20, first.N);
        Assert.Equal(1000, first.NOriginal);
        Assert.InRange(first.Metrics[0].Value, 0.5, 1.0);   // a language model prefers the grammatical sentence more often than not
    }

    /// <summary>The requests a built-in task sends, captured with a recording scorer.</summary>
    static List<LoglikelihoodRequest> Requests(string taskName, int docs)
    {
        var recorder = new Recorder();
        EvalTaskRegistry.Create(taskName).Evaluate(new EvalContext { Scorer = recorder, Limit = docs });
        return recorder.Requests;
    }

    sealed class Recorder : ILanguageModelScorer
    {
        public List<LoglikelihoodRequest> Requests { get; } = new();
        public IReadOnlyList<LoglikelihoodResult> Loglikelihood(IReadOnlyList<LoglikelihoodRequest> requests, CancellationToken cancellationToken = default)
        {
            Requests.AddRange(requests);
            return requests.Select(_ => new LoglikelihoodResult(-1, false, 1)).ToList();
        }
        public IReadOnlyList<RollingLoglikelihood> LoglikelihoodRolling(IReadOnlyList<string> texts, CancellationToken cancellationToken = default) => throw new NotSupportedException();
        public IReadOnlyList<string> GenerateUntil(IReadOnlyList<GenerateUntilRequest> requests, CancellationToken cancellationToken = default) => throw new NotSupportedException();
        public int TruncatedRequests => 0;
    }
}
