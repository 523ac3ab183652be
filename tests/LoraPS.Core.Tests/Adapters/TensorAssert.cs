using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LoraPS.Tests.Adapters;

internal static class TensorAssert
{
    /// <summary>Max |expected − actual| ≤ <paramref name="atol"/>, compared in float64, shapes equal.</summary>
    public static void Close(Tensor expected, Tensor actual, double atol, string? what = null)
    {
        Assert.Equal(expected.shape, actual.shape);
        using var scope = NewDisposeScope();
        double diff = (expected.detach().to(ScalarType.Float64) - actual.detach().to(ScalarType.Float64)).abs().max().item<double>();
        Assert.True(diff <= atol, $"{what ?? "tensors"}: max |diff| = {diff:G3} > {atol:G3}");
    }

    public static void Equal(Tensor expected, Tensor actual, string? what = null)
    {
        Assert.Equal(expected.shape, actual.shape);
        Assert.True(expected.eq(actual).all().item<bool>(), $"{what ?? "tensors"} differ");
    }

    public static Tensor Random(Generator generator, params long[] shape) =>
        randn(shape, dtype: ScalarType.Float32, generator: generator);
}
