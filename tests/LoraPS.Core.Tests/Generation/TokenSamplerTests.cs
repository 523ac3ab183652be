using LoraPS.Generation;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LoraPS.Tests.Generation;

public class TokenSamplerTests
{
    static Tensor Logits(params float[][] rows) => tensor(rows.SelectMany(r => r).ToArray(), new long[] { rows.Length, rows[0].Length });

    [Fact]
    public void GreedyTakesTheArgmaxOfEachRow()
    {
        using var sampler = new TokenSampler(new SamplingOptions());
        using var logits = Logits(new[] { 0.1f, 3f, -1f, 2.9f }, new[] { 5f, 0f, 0f, 0f });
        Assert.Equal(new long[] { 1, 0 }, sampler.Next(logits));
    }

    [Fact]
    public void TopKOfOneIsGreedyWhateverTheTemperature()
    {
        using var sampler = new TokenSampler(new SamplingOptions { Temperature = 5, TopK = 1, Seed = 1 });
        using var logits = Logits(new[] { 0.1f, 3f, -1f, 2.9f });
        for (int i = 0; i < 20; i++) Assert.Equal(1, sampler.Next(logits)[0]);
    }

    [Fact]
    public void TopPKeepsTheSmallestSetReachingTheMass()
    {
        // probabilities 0.5, 0.3, 0.2: top_p 0.7 keeps {0, 1}; token 2 must never be drawn.
        var p = new[] { 0.5, 0.3, 0.2 };
        using var logits = Logits(p.Select(v => (float)Math.Log(v)).ToArray());
        using var sampler = new TokenSampler(new SamplingOptions { Temperature = 1, TopP = 0.7, Seed = 7 });
        var seen = Enumerable.Range(0, 400).Select(_ => sampler.Next(logits)[0]).ToList();
        Assert.DoesNotContain(2L, seen);
        Assert.Contains(0L, seen);
        Assert.Contains(1L, seen);
        // 0.5/0.8 of the kept mass goes to token 0.
        Assert.InRange(seen.Count(t => t == 0) / 400.0, 0.55, 0.70);
    }

    [Fact]
    public void SamplingFollowsTheSoftmaxAndIsReproducibleWithASeed()
    {
        using var logits = Logits(new[] { 0f, (float)Math.Log(3) }); // p = 0.25, 0.75
        long[] Draw(long seed)
        {
            using var s = new TokenSampler(new SamplingOptions { Temperature = 1, Seed = seed });
            return Enumerable.Range(0, 2000).Select(_ => s.Next(logits)[0]).ToArray();
        }
        var a = Draw(42);
        Assert.Equal(a, Draw(42));
        Assert.NotEqual(a, Draw(43));
        Assert.InRange(a.Average(), 0.72, 0.78);
    }

    [Theory]
    [InlineData(-0.1, 0, 1.0)]
    [InlineData(1.0, -1, 1.0)]
    [InlineData(1.0, 0, 0.0)]
    [InlineData(1.0, 0, 1.5)]
    public void InvalidOptionsAreRejectedWithTheirName(double temperature, int topK, double topP)
    {
        var e = Assert.Throws<ArgumentException>(() => new TokenSampler(new SamplingOptions { Temperature = temperature, TopK = topK, TopP = topP }));
        Assert.Contains(e.ParamName!, e.Message);
    }
}
