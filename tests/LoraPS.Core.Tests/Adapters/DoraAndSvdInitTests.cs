using LoraPS.Adapters;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

namespace LoraPS.Tests.Adapters;

/// <summary>DoRA against hand computations; PiSSA and OLoRA against their defining invariants.</summary>
public class DoraAndSvdInitTests
{
    const long In = 8, Out = 6;

    static TorchSharp.Modules.Linear BaseLinear(Generator g, long inF = In, long outF = Out) =>
        Linear(new TorchSharp.Modules.Parameter(TensorAssert.Random(g, outF, inF)), new TorchSharp.Modules.Parameter(TensorAssert.Random(g, outF)));

    static LoraLinear DoraLayer(Generator g, int rank = 2, double alpha = 4)
    {
        var layer = new LoraLinear(BaseLinear(g));
        layer.AddAdapter("default", new LoraLayerOptions { Rank = rank, Alpha = alpha, UseDora = true }, g);
        using var noGrad = no_grad();
        layer.LoraB("default").copy_(0.3 * TensorAssert.Random(g, Out, rank));
        layer.Magnitude("default")!.copy_(layer.Magnitude("default")! * (1 + 0.2 * TensorAssert.Random(g, Out)));
        return layer;
    }

    static Tensor F64(Tensor t) => t.detach().to(ScalarType.Float64);

    /// <summary>V = W + s·B·A and n = ‖V‖ per output row, in float64.</summary>
    static (Tensor V, Tensor Norm) Directional(LoraLinear layer)
    {
        var v = F64(layer.BaseLayer.weight!) + layer.Scaling("default") * F64(layer.LoraB("default")).matmul(F64(layer.LoraA("default")));
        return (v, v.pow(2).sum(1).sqrt());
    }

    [Fact]
    public void MagnitudeStartsAsTheRowNormOfW()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(21);
        using var layer = new LoraLinear(BaseLinear(g));
        layer.AddAdapter("default", new LoraLayerOptions { Rank = 2, Alpha = 4, UseDora = true }, g);
        TensorAssert.Close(F64(layer.BaseLayer.weight!).pow(2).sum(1).sqrt(), layer.Magnitude("default")!, 1e-6);
    }

    [Fact]
    public void ForwardIsMagnitudeTimesDirectionPlusUnscaledBias()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(22);
        using var layer = DoraLayer(g);
        var x = TensorAssert.Random(g, 3, 4, In);
        var (v, norm) = Directional(layer);
        var gScale = F64(layer.Magnitude("default")!) / norm;
        var expected = gScale * F64(x).matmul(v.t()) + F64(layer.BaseLayer.bias!);
        TensorAssert.Close(expected, layer.forward(x), 1e-5);
    }

    [Fact]
    public void MergeRescalesTheWeightAndUnmergeUsesTheCachedNorm()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(23);
        using var layer = DoraLayer(g);
        var x = TensorAssert.Random(g, 5, In);
        var unmerged = layer.forward(x);
        var original = layer.BaseLayer.weight!.clone();
        var (v, norm) = Directional(layer);
        var expectedMerged = (F64(layer.Magnitude("default")!) / norm).view(-1, 1) * v;

        layer.Merge();
        TensorAssert.Close(expectedMerged, layer.BaseLayer.weight!, 1e-5, "merged W");
        TensorAssert.Close(unmerged, layer.forward(x), 1e-5, "merged forward");

        // Changing m after merging must not break unmerge: it divides by the norm cached at merge time.
        layer.Unmerge();
        TensorAssert.Close(original, layer.BaseLayer.weight!, 1e-5, "unmerged W");
    }

    /// <summary>
    /// With the norm n detached, y = diag(m/n)·V·x + b, so for L = Σ C ⊙ y:
    /// dL/dV = diag(m/n)·Cᵀ·X, dL/dB = s·dL/dV·Aᵀ, dL/dA = s·Bᵀ·dL/dV, dL/dm = rowsum((Cᵀ·X) ⊙ V)/n.
    /// A norm that carried gradient would add terms to dL/dA and dL/dB.
    /// </summary>
    [Fact]
    public void GradientsTreatTheWeightNormAsAConstant()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(24);
        using var layer = DoraLayer(g);
        var x = TensorAssert.Random(g, 7, In);
        var c = TensorAssert.Random(g, 7, Out);
        (layer.forward(x) * c).sum().backward();

        var (v, norm) = Directional(layer);
        double s = layer.Scaling("default");
        var m = F64(layer.Magnitude("default")!);
        var ctx = F64(c).t().matmul(F64(x));
        var dV = (m / norm).view(-1, 1) * ctx;
        TensorAssert.Close(s * dV.matmul(F64(layer.LoraA("default")).t()), layer.LoraB("default").grad!, 1e-5, "dB");
        TensorAssert.Close(s * F64(layer.LoraB("default")).t().matmul(dV), layer.LoraA("default").grad!, 1e-5, "dA");
        TensorAssert.Close((ctx * v).sum(1) / norm, layer.Magnitude("default")!.grad!, 1e-5, "dm");
        Assert.Null(layer.BaseLayer.weight!.grad);
    }

    [Fact]
    public void PiSSAPutsThePrincipalPartInTheAdapterAndTheResidualInW()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(25);
        using var layer = new LoraLinear(BaseLinear(g, 12, 10));
        var w = layer.BaseLayer.weight!.clone();
        var x = TensorAssert.Random(g, 4, 12);
        var before = layer.forward(x);

        layer.AddAdapter("default", new LoraLayerOptions { Rank = 3, Alpha = 6, Init = LoraInit.PiSSA }, g);
        var update = layer.DeltaWeight("default");
        var (u, sv, vh) = linalg.svd(F64(w), fullMatrices: false);
        var principal = u[.., ..3].matmul(sv[..3].diag()).matmul(vh[..3]);
        TensorAssert.Close(principal, update, 1e-5, "s·B·A = rank-3 part of W");
        TensorAssert.Close(w, layer.BaseLayer.weight! + update, 1e-5, "W_res + s·B·A = W");
        TensorAssert.Close(before, layer.forward(x), 1e-5, "output unchanged at init");
        // PiSSA's factors are balanced: A·Aᵀ = B·Bᵀ = diag(S_r)/s.
        TensorAssert.Close(F64(layer.LoraA("default")).matmul(F64(layer.LoraA("default")).t()), F64(layer.LoraB("default")).t().matmul(F64(layer.LoraB("default"))), 1e-4);
    }

    [Fact]
    public void FastPiSSAFindsTheSamePrincipalPart()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(26);
        // A rank-3 matrix plus small noise: the randomised SVD must recover its top-3 part.
        var w = TensorAssert.Random(g, 40, 3).matmul(TensorAssert.Random(g, 3, 30)) + 1e-3 * TensorAssert.Random(g, 40, 30);
        using var layer = new LoraLinear(Linear(new TorchSharp.Modules.Parameter(w.clone()), null));
        layer.AddAdapter("default", new LoraLayerOptions { Rank = 3, Alpha = 3, Init = LoraInit.PiSSAFast(4) }, g);

        var (u, sv, vh) = linalg.svd(F64(w), fullMatrices: false);
        var principal = u[.., ..3].matmul(sv[..3].diag()).matmul(vh[..3]);
        TensorAssert.Close(principal, layer.DeltaWeight("default"), 1e-3, "top-3 part");
        TensorAssert.Close(w, layer.BaseLayer.weight! + layer.DeltaWeight("default"), 1e-5, "W_res + s·B·A = W");
    }

    [Fact]
    public void OLoRATakesTheLeadingQRFactors()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(27);
        using var layer = new LoraLinear(BaseLinear(g, 12, 10));
        var w = layer.BaseLayer.weight!.clone();
        layer.AddAdapter("default", new LoraLayerOptions { Rank = 4, Alpha = 8, Init = LoraInit.OLoRA }, g);

        var b = F64(layer.LoraB("default"));
        TensorAssert.Close(eye(4, dtype: ScalarType.Float64), b.t().matmul(b), 1e-5, "B has orthonormal columns");
        // B·A = Q_r·Q_rᵀ·W: the projection of W onto the span of its first r QR directions.
        TensorAssert.Close(b.matmul(b.t()).matmul(F64(w)), b.matmul(F64(layer.LoraA("default"))), 1e-5, "B·A = Q_r·Q_rᵀ·W");
        TensorAssert.Close(w, layer.BaseLayer.weight! + layer.DeltaWeight("default"), 1e-5, "W_res + s·B·A = W");
        Assert.Equal(0.0, F64(layer.LoraA("default")).tril(-1).abs().max().item<double>());
    }

    [Fact]
    public void SvdInitsNeedTheRankToFit()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(28);
        using var layer = new LoraLinear(BaseLinear(g, 4, 3));
        Assert.Throws<ArgumentException>(() => layer.AddAdapter("default", new LoraLayerOptions { Rank = 4, Alpha = 4, Init = LoraInit.OLoRA }, g));
        Assert.Empty(layer.Adapters);
    }
}
