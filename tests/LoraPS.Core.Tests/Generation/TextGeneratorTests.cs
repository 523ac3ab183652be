using LoraPS.Generation;
using LoraPS.Models;
using Xunit;

namespace LoraPS.Tests.Generation;

/// <summary>Generation on the real bundled stories260K model.</summary>
public sealed class TextGeneratorTests : IClassFixture<TextGeneratorTests.Stories>
{
    public sealed class Stories : IDisposable
    {
        public LoraModel Model { get; } = LoraModel.Load(LoraModel.BundledModelPath);
        public void Dispose() => Model.Dispose();
    }

    const string DocumentedSample =
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. " +
        "One day, she saw a big, red ball.";

    readonly LoraModel model;
    public TextGeneratorTests(Stories stories) => model = stories.Model;

    GenerationResult Run(GenerationRequest request, CancellationToken token = default) =>
        TextGenerator.Generate(model.Network, model.Tokenizer, request, token);

    [Fact]
    public void GreedyFromBosReproducesKarpathysDocumentedSample()
    {
        var result = Run(new GenerationRequest { Prompt = "", MaxNewTokens = 60 });
        Assert.StartsWith(DocumentedSample, result.Completion);
        Assert.Equal(1, result.PromptTokens);          // just <s>
        Assert.Equal(60, result.GeneratedTokens);
        Assert.Equal(FinishReason.Length, result.FinishReason);
        Assert.True(result.TokensPerSecond > 0);
    }

    [Fact]
    public void TheKvCacheChangesNothingButSpeed()
    {
        var cached = Run(new GenerationRequest { Prompt = "Lily and Tom", MaxNewTokens = 40 });
        var uncached = Run(new GenerationRequest { Prompt = "Lily and Tom", MaxNewTokens = 40, UseKvCache = false });
        Assert.Equal(uncached.TokenIds, cached.TokenIds);
        Assert.Equal(uncached.Text, cached.Text);
        Assert.StartsWith("Lily and Tom", cached.Text);
    }

    [Fact]
    public void SeededSamplingIsReproducibleAndDiffersAcrossSeeds()
    {
        GenerationRequest With(long seed) => new() { Prompt = "Once upon a time", MaxNewTokens = 30, Sampling = new SamplingOptions { Temperature = 1.0, TopP = 0.9, Seed = seed } };
        Assert.Equal(Run(With(1)).TokenIds, Run(With(1)).TokenIds);
        Assert.NotEqual(Run(With(1)).TokenIds, Run(With(2)).TokenIds);
    }

    [Fact]
    public void StopsAtAStopSequenceAndCutsIt()
    {
        var result = Run(new GenerationRequest { Prompt = "", MaxNewTokens = 60, StopSequences = new[] { "Lily" } });
        Assert.Equal(FinishReason.StopSequence, result.FinishReason);
        Assert.Equal("Once upon a time, there was a little girl named ", result.Completion);
    }

    [Fact]
    public void StopsAtEndOfSequence()
    {
        // llama2.c models end a story by starting the next one with <s> (id 1); HF's generation_config says
        // eos = </s> (2), which stories260K never emits, so <s> is passed as an extra stop token.
        var results = Enumerable.Range(1, 4).Select(seed => Run(new GenerationRequest
            { MaxNewTokens = 450, StopTokenIds = new[] { 1 }, Sampling = new SamplingOptions { Temperature = 1, Seed = seed } })).ToList();
        var finished = results.Where(r => r.FinishReason == FinishReason.EndOfSequence).ToList();
        Assert.NotEmpty(finished);
        Assert.All(finished, r => Assert.DoesNotContain(1L, r.TokenIds));
        Assert.All(finished, r => Assert.True(r.GeneratedTokens < 450));
    }

    [Fact]
    public void NeverRunsPastTheContextLength()
    {
        var result = Run(new GenerationRequest { Prompt = "", MaxNewTokens = 5000, Sampling = new SamplingOptions { Temperature = 1, Seed = 3 }, StopSequences = Array.Empty<string>() });
        Assert.True(result.PromptTokens + result.GeneratedTokens <= model.ContextLength);
    }

    [Fact]
    public void CancellationReturnsWhatWasGenerated()
    {
        using var cts = new CancellationTokenSource();
        int seen = 0;
        var result = TextGenerator.Generate(model.Network, model.Tokenizer, new GenerationRequest { MaxNewTokens = 100 }, cts.Token,
            progress: n => { seen = n; if (n == 5) cts.Cancel(); });
        Assert.Equal(FinishReason.Cancelled, result.FinishReason);
        Assert.Equal(5, result.GeneratedTokens);
        Assert.Equal(5, seen);
    }

    [Fact]
    public void RejectsAPromptLongerThanTheContext()
    {
        var prompt = string.Join(" ", Enumerable.Repeat("ball", 600));
        var e = Assert.Throws<ArgumentException>(() => Run(new GenerationRequest { Prompt = prompt }));
        Assert.Contains("context", e.Message);
    }
}
