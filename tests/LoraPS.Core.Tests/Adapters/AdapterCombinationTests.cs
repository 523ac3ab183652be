using LoraPS.Adapters;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace LoraPS.Tests.Adapters;

/// <summary>PEFT's add_weighted_adapter for one layer, checked against ΔW computed by hand.</summary>
public class AdapterCombinationTests
{
    const long In = 10, Out = 9;

    /// <summary>Adapters "a" (r 2, α 4, s 2) and "b" (r 2 or 3, α 3), both with nonzero B.</summary>
    static LoraLinear TwoAdapters(Generator g, int rankB = 2)
    {
        var layer = new LoraLinear(Linear(new TorchSharp.Modules.Parameter(TensorAssert.Random(g, Out, In)), null));
        layer.AddAdapter("a", new LoraLayerOptions { Rank = 2, Alpha = 4 }, g);
        layer.AddAdapter("b", new LoraLayerOptions { Rank = rankB, Alpha = 3, UseRsLora = rankB == 3 }, g);
        using var noGrad = no_grad();
        layer.LoraB("a").copy_(TensorAssert.Random(g, Out, 2));
        layer.LoraB("b").copy_(TensorAssert.Random(g, Out, rankB));
        return layer;
    }

    static Tensor Delta(LoraLinear layer, string adapter) => layer.DeltaWeight(adapter).to(ScalarType.Float64);

    [Fact]
    public void CatIsExact()
    {
        using var scope = NewDisposeScope();
        using var layer = TwoAdapters(new Generator(31), rankB: 3);
        layer.AddWeightedAdapter(["a", "b"], [0.7, -1.5], "mix", AdapterCombinationType.Cat);
        var options = layer.Options("mix");
        Assert.Equal((5, 5.0, 1.0), (options.Rank, options.Alpha, options.Scaling));
        Assert.False(options.UseRsLora);
        TensorAssert.Close(0.7 * Delta(layer, "a") - 1.5 * Delta(layer, "b"), layer.DeltaWeight("mix"), 1e-5);
        Assert.Equal(["a"], layer.ActiveAdapters);
    }

    [Fact]
    public void SvdIsTheBestLowRankApproximationOfTheWeightedSum()
    {
        using var scope = NewDisposeScope();
        using var layer = TwoAdapters(new Generator(32), rankB: 3);
        var target = 0.7 * Delta(layer, "a") - 1.5 * Delta(layer, "b");

        // Rank 5 holds both updates completely.
        layer.AddWeightedAdapter(["a", "b"], [0.7, -1.5], "full", AdapterCombinationType.Svd, svdRank: 5);
        TensorAssert.Close(target, layer.DeltaWeight("full"), 1e-5, "rank 5");

        // The default rank is the largest source rank (3): the truncated SVD of the sum.
        layer.AddWeightedAdapter(["a", "b"], [0.7, -1.5], "k3");
        Assert.Equal(3, layer.Options("k3").Rank);
        var (u, s, vh) = linalg.svd(target, fullMatrices: false);
        TensorAssert.Close(u[.., ..3].matmul(s[..3].diag()).matmul(vh[..3]), layer.DeltaWeight("k3"), 1e-5, "rank 3");
        TensorAssert.Close(u[.., ..3].matmul(s[..3].diag()).abs(), layer.LoraB("k3").abs(), 1e-5, "B = U·S up to sign");
    }

    [Fact]
    public void SvdClampLimitsTheFactorEntries()
    {
        using var scope = NewDisposeScope();
        using var layer = TwoAdapters(new Generator(33));
        layer.AddWeightedAdapter(["a", "b"], [1, 1], "clamped", AdapterCombinationType.Svd, svdClamp: 0.9);
        layer.AddWeightedAdapter(["a", "b"], [1, 1], "plain", AdapterCombinationType.Svd);
        var all = cat([layer.LoraB("plain").flatten(), layer.LoraA("plain").flatten()], 0);
        double hi = all.quantile(tensor(0.9f), -1, false).item<float>();
        Assert.True(layer.LoraB("clamped").abs().max().item<float>() <= hi + 1e-6);
        Assert.True(layer.LoraA("clamped").abs().max().item<float>() <= hi + 1e-6);
    }

    [Fact]
    public void LinearUsesSquareRootWeightsWithTheSignOnA()
    {
        using var scope = NewDisposeScope();
        using var layer = TwoAdapters(new Generator(34));
        layer.AddWeightedAdapter(["a", "b"], [0.5, -2.0], "mix", AdapterCombinationType.Linear);
        double ca = Math.Sqrt(0.5 * 2.0), cb = Math.Sqrt(2.0 * 1.5);
        var a = ca * layer.LoraA("a").to(ScalarType.Float64) - cb * layer.LoraA("b").to(ScalarType.Float64);
        var b = ca * layer.LoraB("a").to(ScalarType.Float64) + cb * layer.LoraB("b").to(ScalarType.Float64);
        TensorAssert.Close(a, layer.LoraA("mix"), 1e-6, "A");
        TensorAssert.Close(b, layer.LoraB("mix"), 1e-6, "B");
        Assert.Equal(1.0, layer.Scaling("mix"));
    }

    [Fact]
    public void OneSourceWithANegativeWeightIsExactlyTheNegatedUpdate()
    {
        using var scope = NewDisposeScope();
        using var layer = TwoAdapters(new Generator(35));
        // A single source always takes the linear path (PEFT), which is exact for one adapter.
        layer.AddWeightedAdapter(["b"], [-0.5], "neg", AdapterCombinationType.Svd);
        TensorAssert.Close(-0.5 * Delta(layer, "b"), layer.DeltaWeight("neg"), 1e-6);
        Assert.Equal(2, layer.Options("neg").Rank);
    }

    [Fact]
    public void BadCombinationsAreRefused()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(36);
        using var layer = TwoAdapters(g, rankB: 3);
        Assert.Contains("equal ranks", Assert.Throws<ArgumentException>(() => layer.AddWeightedAdapter(["a", "b"], [1, 1], "x", AdapterCombinationType.Linear)).Message);
        Assert.Throws<ArgumentException>(() => layer.AddWeightedAdapter(["a", "b"], [1], "x"));
        Assert.Throws<ArgumentException>(() => layer.AddWeightedAdapter(["a"], [1], "b"));
        Assert.Throws<KeyNotFoundException>(() => layer.AddWeightedAdapter(["zzz"], [1], "x"));
        Assert.Throws<ArgumentOutOfRangeException>(() => layer.AddWeightedAdapter(["a", "b"], [1, 1], "x", AdapterCombinationType.Svd, svdRank: 10));
        layer.AddAdapter("d", new LoraLayerOptions { Rank = 2, Alpha = 2, UseDora = true }, g);
        Assert.Throws<NotSupportedException>(() => layer.AddWeightedAdapter(["a", "d"], [1, 1], "x", AdapterCombinationType.Cat));
        Assert.DoesNotContain("x", layer.Adapters);
    }
}
