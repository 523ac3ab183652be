using LoraPS.Adapters;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace LoraPS.Tests.Adapters;

public class LoraLinearTests
{
    const long In = 6, Out = 5;

    static LoraLayerOptions Opts(int rank = 2, double alpha = 4, bool rsLora = false, bool dora = false, double dropout = 0, LoraInit? init = null) =>
        new() { Rank = rank, Alpha = alpha, UseRsLora = rsLora, UseDora = dora, Dropout = dropout, Init = init ?? LoraInit.Default };

    static TorchSharp.Modules.Linear BaseLinear(Generator g, long inF = In, long outF = Out, bool bias = true) =>
        Linear(new TorchSharp.Modules.Parameter(TensorAssert.Random(g, outF, inF)), bias ? new TorchSharp.Modules.Parameter(TensorAssert.Random(g, outF)) : null);

    /// <summary>A layer with one adapter "default" whose B is nonzero, so the update is visible.</summary>
    static LoraLinear LayerWithAdapter(Generator g, LoraLayerOptions options)
    {
        var layer = new LoraLinear(BaseLinear(g));
        layer.AddAdapter("default", options, g);
        using var noGrad = no_grad();
        layer.LoraB("default").copy_(TensorAssert.Random(g, Out, options.Rank));
        if (layer.Magnitude("default") is { } m) m.copy_(m * (1 + 0.1 * TensorAssert.Random(g, Out)));
        return layer;
    }

    /// <summary>y = x·Wᵀ + b + s·(x·Aᵀ)·Bᵀ, computed independently in float64.</summary>
    static Tensor ExpectedLora(LoraLinear layer, Tensor x, params string[] adapters)
    {
        var xd = x.to(ScalarType.Float64);
        var y = xd.matmul(layer.BaseLayer.weight!.to(ScalarType.Float64).t()) + layer.BaseLayer.bias!.to(ScalarType.Float64);
        foreach (var a in adapters)
            y += layer.Scaling(a) * xd.matmul(layer.LoraA(a).to(ScalarType.Float64).t()).matmul(layer.LoraB(a).to(ScalarType.Float64).t());
        return y;
    }

    [Fact]
    public void ForwardIsBasePlusScaledLowRankUpdate()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(1);
        using var layer = LayerWithAdapter(g, Opts());
        var x = TensorAssert.Random(g, 3, 4, In);
        TensorAssert.Close(ExpectedLora(layer, x, "default"), layer.forward(x), 1e-5);
        Assert.Equal(2.0, layer.Scaling("default"));
    }

    [Fact]
    public void RsLoraScalesByAlphaOverSqrtRank()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(2);
        using var layer = LayerWithAdapter(g, Opts(rank: 4, alpha: 8, rsLora: true));
        Assert.Equal(4.0, layer.Scaling("default"));
        var x = TensorAssert.Random(g, 3, In);
        TensorAssert.Close(ExpectedLora(layer, x, "default"), layer.forward(x), 1e-5);
    }

    [Fact]
    public void MergedForwardEqualsUnmergedAndUnmergeRestoresW()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(3);
        using var layer = LayerWithAdapter(g, Opts());
        var x = TensorAssert.Random(g, 7, In);
        var original = layer.BaseLayer.weight!.clone();
        var unmerged = layer.forward(x);
        var expectedW = original + 2.0 * layer.LoraB("default").matmul(layer.LoraA("default"));

        Assert.Equal(["default"], layer.Merge());
        Assert.True(layer.IsMerged);
        TensorAssert.Close(expectedW, layer.BaseLayer.weight!, 1e-6, "merged W");
        TensorAssert.Close(unmerged, layer.forward(x), 1e-5, "merged forward");

        var afterFirstMerge = layer.BaseLayer.weight!.clone();
        Assert.Empty(layer.Merge());
        TensorAssert.Equal(afterFirstMerge, layer.BaseLayer.weight!, "merge twice");

        Assert.Equal(["default"], layer.Unmerge());
        TensorAssert.Close(original, layer.BaseLayer.weight!, 1e-6, "unmerged W");
        Assert.False(layer.IsMerged);
    }

    [Fact]
    public void DeltaWeightIsScaledBA()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(4);
        using var layer = LayerWithAdapter(g, Opts(rank: 3, alpha: 3));
        var delta = layer.DeltaWeight("default");
        Assert.Equal([Out, In], delta.shape);
        TensorAssert.Close(layer.LoraB("default").matmul(layer.LoraA("default")), delta, 1e-7);
    }

    [Fact]
    public void DefaultInitDrawsLikePeftAndStartsAsANoOp()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(5);
        using var layer = new LoraLinear(BaseLinear(g, 64, 32));
        var x = TensorAssert.Random(g, 3, 64);
        var baseOut = layer.BaseLayer.forward(x);

        layer.AddAdapter("default", Opts(rank: 4), new Generator(77));
        // PEFT: nn.Linear(in, r) and nn.Linear(r, out) defaults, then kaiming_uniform_(A) again; B = 0.
        var replay = new Generator(77);
        empty(4, 64).uniform_(-1 / 8.0, 1 / 8.0, replay);
        empty(32, 4).uniform_(-0.5, 0.5, replay);
        var expectedA = empty(4, 64).uniform_(-LoraInitializationBound(64), LoraInitializationBound(64), replay);

        TensorAssert.Equal(expectedA, layer.LoraA("default"), "A");
        Assert.True(layer.LoraA("default").abs().max().item<float>() <= 1 / 8.0);
        Assert.Equal(0f, layer.LoraB("default").abs().max().item<float>());
        TensorAssert.Equal(baseOut, layer.forward(x), "forward at init");
    }

    static double LoraInitializationBound(long fanIn) => Math.Sqrt(3.0) * (Math.Sqrt(2.0 / (1 + Math.Sqrt(5.0) * Math.Sqrt(5.0))) / Math.Sqrt(fanIn));

    [Fact]
    public void GaussianInitHasStdOneOverRank()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(6);
        using var layer = new LoraLinear(BaseLinear(g, 4096, 8));
        layer.AddAdapter("default", Opts(rank: 4, init: LoraInit.Gaussian), g);
        double std = layer.LoraA("default").std().item<float>();
        Assert.InRange(std, 0.25 * 0.97, 0.25 * 1.03);
        Assert.Equal(0f, layer.LoraB("default").abs().max().item<float>());
    }

    [Fact]
    public void OnlyAdapterWeightsAreTrainable()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(7);
        using var layer = LayerWithAdapter(g, Opts(dora: true));
        var trainable = layer.named_parameters().Where(p => p.parameter.requires_grad).Select(p => p.name).Order().ToArray();
        Assert.Equal(["lora_A.default.weight", "lora_B.default.weight", "lora_magnitude_vector.default.weight"], trainable);
        Assert.Equal(
            ["base_layer.bias", "base_layer.weight", "lora_A.default.weight", "lora_B.default.weight", "lora_magnitude_vector.default.weight"],
            layer.state_dict().Keys.Order().ToArray());
    }

    [Fact]
    public void ActiveAdaptersAreSummedAndInactiveOnesFrozen()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(8);
        using var layer = LayerWithAdapter(g, Opts());
        layer.AddAdapter("other", Opts(rank: 3, alpha: 3), g);
        using (no_grad()) layer.LoraB("other").copy_(TensorAssert.Random(g, Out, 3));
        var x = TensorAssert.Random(g, 2, In);

        Assert.Equal(["default"], layer.ActiveAdapters);
        Assert.False(layer.LoraA("other").requires_grad);
        TensorAssert.Close(ExpectedLora(layer, x, "default"), layer.forward(x), 1e-5, "one active");

        layer.SetActiveAdapters("default", "other");
        Assert.True(layer.LoraB("other").requires_grad);
        TensorAssert.Close(ExpectedLora(layer, x, "default", "other"), layer.forward(x), 1e-5, "two active");

        layer.SetActiveAdapters("other");
        Assert.False(layer.LoraA("default").requires_grad);
        TensorAssert.Close(ExpectedLora(layer, x, "other"), layer.forward(x), 1e-5, "other only");
    }

    [Fact]
    public void DisablingGivesTheBaseLayerAndUnmergesFirst()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(9);
        using var layer = LayerWithAdapter(g, Opts());
        var x = TensorAssert.Random(g, 2, In);
        var original = layer.BaseLayer.weight!.clone();
        var baseOut = layer.BaseLayer.forward(x);
        layer.Merge();

        layer.DisableAdapters();
        Assert.False(layer.IsMerged);
        TensorAssert.Close(original, layer.BaseLayer.weight!, 1e-6);
        TensorAssert.Close(baseOut, layer.forward(x), 1e-5);
        Assert.False(layer.LoraA("default").requires_grad);

        layer.EnableAdapters();
        Assert.True(layer.LoraA("default").requires_grad);
        TensorAssert.Close(ExpectedLora(layer, x, "default"), layer.forward(x), 1e-5);
    }

    [Fact]
    public void DeletingAnAdapterRemovesItsParametersAndActivatesAnother()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(10);
        using var layer = LayerWithAdapter(g, Opts());
        layer.AddAdapter("other", Opts(), g);
        layer.Merge(["default"]);
        Assert.Contains("Unmerge", Assert.Throws<InvalidOperationException>(() => layer.DeleteAdapter("default")).Message);
        layer.Unmerge();

        layer.DeleteAdapter("default");
        Assert.Equal(["other"], layer.Adapters);
        Assert.Equal(["other"], layer.ActiveAdapters);
        Assert.DoesNotContain(layer.state_dict().Keys, k => k.Contains(".default."));
        Assert.Contains("has other", Assert.Throws<KeyNotFoundException>(() => layer.LoraA("default")).Message);
    }

    [Fact]
    public void DropoutOnlyTouchesTheLoraBranch()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(11);
        using var layer = new LoraLinear(BaseLinear(g));
        layer.AddAdapter("default", Opts(dropout: 0.5), g);
        layer.train();
        var x = TensorAssert.Random(g, 4, In);
        // B = 0 at init: whatever the dropout does to the LoRA input, the base path is untouched.
        TensorAssert.Equal(layer.BaseLayer.forward(x), layer.forward(x));

        using (no_grad()) layer.LoraB("default").copy_(TensorAssert.Random(g, Out, 2));
        Assert.False(layer.forward(x).allclose(ExpectedLora(layer, x, "default").to(ScalarType.Float32), rtol: 0, atol: 1e-5));
        layer.eval();
        TensorAssert.Close(ExpectedLora(layer, x, "default"), layer.forward(x), 1e-5);
    }

    [Fact]
    public void HalfPrecisionBaseKeepsFloat32AdaptersAndOutputDtype()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(12);
        var baseLayer = BaseLinear(g);
        baseLayer.to(ScalarType.BFloat16);
        using var layer = new LoraLinear(baseLayer);
        layer.AddAdapter("default", Opts(), g);
        using (no_grad()) layer.LoraB("default").copy_(TensorAssert.Random(g, Out, 2));
        Assert.Equal(ScalarType.Float32, layer.LoraA("default").dtype);

        var x = TensorAssert.Random(g, 3, In).to(ScalarType.BFloat16);
        var y = layer.forward(x);
        Assert.Equal(ScalarType.BFloat16, y.dtype);
        TensorAssert.Close(ExpectedLora(layer, x, "default"), y, 0.1);

        var original = layer.BaseLayer.weight!.clone();
        layer.Merge();
        layer.Unmerge();
        TensorAssert.Close(original, layer.BaseLayer.weight!, 0.05, "bf16 round trip");
    }

    [Fact]
    public void SafeMergeRefusesNaNAndLeavesWUnchanged()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(13);
        using var layer = LayerWithAdapter(g, Opts());
        var original = layer.BaseLayer.weight!.clone();
        using (no_grad()) layer.LoraB("default")[0, 0] = float.NaN;
        Assert.Throws<InvalidOperationException>(() => layer.Merge(safeMerge: true));
        TensorAssert.Equal(original, layer.BaseLayer.weight!);
        Assert.False(layer.IsMerged);
    }

    [Fact]
    public void MisuseIsReportedClearly()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(14);
        using var layer = LayerWithAdapter(g, Opts());
        var shape = Assert.Throws<ArgumentException>(() => layer.SetAdapterWeights("default", zeros(2, 7), zeros(Out, 2)));
        Assert.Contains("lora_A must be [2, 6] (r, in), got [2, 7]", shape.Message);
        Assert.Throws<ArgumentException>(() => layer.SetAdapterWeights("default", zeros(2, In), zeros(Out, 3)));
        Assert.Throws<ArgumentException>(() => layer.AddAdapter("default", Opts()));
        Assert.Throws<ArgumentException>(() => layer.AddAdapter("a.b", Opts()));
        Assert.Throws<KeyNotFoundException>(() => layer.SetActiveAdapters("missing"));
        layer.Merge();
        Assert.Throws<InvalidOperationException>(() => layer.AddAdapter("late", Opts()));
        Assert.Throws<NotSupportedException>(() => new LoraLinear(BaseLinear(g)).AddAdapter("x", Opts(init: LoraInit.Parse("eva"))));
    }

    /// <summary>
    /// B·A for in = out = 10⁶ would be 4 TB of float32; the update has to go through the rank-2 bottleneck to
    /// run at all (16 MB of factors here).
    /// </summary>
    [Fact]
    public void LoraUpdateNeverFormsTheFullProduct()
    {
        using var scope = NewDisposeScope();
        const long huge = 1_000_000;
        var g = new Generator(15);
        var a = TensorAssert.Random(g, 2, huge);
        var b = TensorAssert.Random(g, huge, 2);
        var x = TensorAssert.Random(g, 1, huge);
        var y = LoraLinear.LoraUpdate(x, a, b, 0.5);
        Assert.Equal([1, huge], y.shape);
        var xa = x.to(ScalarType.Float64).matmul(a.to(ScalarType.Float64).t());
        var expected = xa.matmul(b.to(ScalarType.Float64).t()) * 0.5;
        TensorAssert.Close(expected, y, 1e-5 * expected.abs().max().item<double>());
    }
}
