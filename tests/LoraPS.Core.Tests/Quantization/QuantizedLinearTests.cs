using LoraPS.Adapters;
using LoraPS.Models;
using LoraPS.Quantization;
using LoraPS.Tests.Adapters;
using LoraPS.Tests.Models;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LoraPS.Tests.Quantization;

/// <summary>The quantized frozen linear layer: forward, input-only backward, shared buffer, and LoRA on top of it.</summary>
public class QuantizedLinearTests
{
    static (Tensor W, Tensor B) Weights(long outF, long inF, ulong seed)
    {
        var g = new Generator(seed);
        return (randn(outF, inF, generator: g) * 0.05, randn(outF, generator: g) * 0.1);
    }

    [Theory]
    [InlineData("nf4")]
    [InlineData("nf4-dq")]
    [InlineData("fp4-dq")]
    [InlineData("int8")]
    public void ForwardEqualsALinearOverTheDequantizedWeight(string format)
    {
        using var scope = NewDisposeScope();
        // 172 inputs: stories260K's down_proj, whose size is not a multiple of the 64-block.
        var (w, b) = Weights(64, 172, 1);
        var options = QuantizationOptions.Parse(format);
        var q = QuantizedTensor.Quantize(w, options.Type, options.BlockSize, options.DoubleQuant);
        using var reference = q.Dequantize();
        using var layer = new QuantizedLinear(q, b, ScalarType.Float32);
        var x = randn(3, 5, 172, generator: new Generator(2));
        var expected = nn.functional.linear(x, reference, b);
        TensorAssert.Equal(expected, layer.forward(x), "x·dequant(W)ᵀ + b");
        Assert.DoesNotContain(layer.parameters(), p => p.requires_grad);
        // The state dict holds the bias under PEFT's name; the quantized weight is not a parameter.
        Assert.Equal(["bias"], layer.state_dict().Keys.ToList());
    }

    [Fact]
    public void BackwardGivesTheInputGradientOnlyAndKeepsNoWeightCopy()
    {
        using var scope = NewDisposeScope();
        var (w, b) = Weights(48, 172, 3);
        var q = QuantizedTensor.Quantize(w, QuantType.NF4, doubleQuant: true);
        using var reference = q.Dequantize();
        var workspace = new DequantizationWorkspace();
        using var layer = new QuantizedLinear(q, b, ScalarType.Float32, workspace);
        using var other = new QuantizedLinear(QuantizedTensor.Quantize(randn(172, 48), QuantType.NF4), null, ScalarType.Float32, workspace);
        var x = randn(4, 172, generator: new Generator(4)).requires_grad_(true);
        var y = layer.forward(x);
        // Another layer dequantizes into the shared buffer between forward and backward: the backward must not rely on it.
        other.forward(randn(2, 48));
        var gradY = randn(4, 48, generator: new Generator(5));
        (y * gradY).sum().backward();
        TensorAssert.Close(gradY.matmul(reference), x.grad!, 1e-6, "grad_x = grad_y·W");
        Assert.Null(layer.bias!.grad);
        // One buffer of the larger weight, not one per layer.
        Assert.Equal(48 * 172 * 4, workspace.Bytes);
    }

    [Fact]
    public void BFloat16ComputeDequantizesIntoBFloat16()
    {
        using var scope = NewDisposeScope();
        var (w, _) = Weights(32, 64, 6);
        var q = QuantizedTensor.Quantize(w, QuantType.NF4);
        using var layer = new QuantizedLinear(q, null, ScalarType.BFloat16);
        var x = randn(2, 64);
        var y = layer.forward(x);
        Assert.Equal(ScalarType.Float32, y.dtype);
        var expected = nn.functional.linear(x.to(ScalarType.BFloat16), q.Dequantize(ScalarType.BFloat16)).to(ScalarType.Float32);
        TensorAssert.Equal(expected, y, "bf16 matmul");
    }

    [Fact]
    public void LoraOnAQuantizedBaseAddsTheUpdateAndTrainsOnlyTheAdapter()
    {
        using var scope = NewDisposeScope();
        var (w, b) = Weights(40, 172, 7);
        var q = QuantizedTensor.Quantize(w, QuantType.NF4, doubleQuant: true);
        using var reference = q.Dequantize();
        using var lora = new LoraLinear(new QuantizedLinear(q, b, ScalarType.Float32));
        lora.AddAdapter("default", new LoraLayerOptions { Rank = 4, Alpha = 8, Init = LoraInit.Gaussian }, new Generator(8));
        using (no_grad()) lora.LoraB("default").normal_(0, 0.1, new Generator(9));
        var x = randn(3, 172, generator: new Generator(10)).requires_grad_(true);
        var expected = nn.functional.linear(x, reference, b) + lora.Scaling("default") * x.matmul(lora.LoraA("default").t()).matmul(lora.LoraB("default").t());
        var y = lora.forward(x);
        TensorAssert.Close(expected, y, 1e-5, "base + s·B·A·x");
        y.sum().backward();
        Assert.NotNull(lora.LoraA("default").grad);
        Assert.NotNull(lora.LoraB("default").grad);
        TensorAssert.Close(reference.t().sum(1) + (lora.Scaling("default") * lora.LoraB("default").matmul(lora.LoraA("default"))).t().sum(1),
            x.grad![0], 1e-4, "grad_x");
        Assert.True(lora.IsBaseQuantized);
        Assert.Throws<InvalidOperationException>(() => lora.BaseLayer);
        // The merged weight is the dequantized W plus ΔW, unquantized.
        TensorAssert.Close(reference + lora.DeltaWeight("default"), lora.MergedWeight(), 1e-6, "merged weight");
        var error = Assert.Throws<InvalidOperationException>(() => lora.Merge());
        Assert.Contains("re-quantize", error.Message);
    }

    [Fact]
    public void PissaOnAQuantizedBaseIsRefused()
    {
        using var scope = NewDisposeScope();
        using var lora = new LoraLinear(new QuantizedLinear(QuantizedTensor.Quantize(randn(16, 64), QuantType.NF4), null, ScalarType.Float32));
        var error = Assert.Throws<NotSupportedException>(() => lora.AddAdapter("x", new LoraLayerOptions { Rank = 2, Alpha = 2, Init = LoraInit.PiSSA }));
        Assert.Contains("quantized", error.Message);
    }

    [Theory]
    [InlineData("nf4", 4.5, 4.6)]
    [InlineData("fp4", 4.5, 4.6)]
    [InlineData("nf4-dq", 4.1, 4.2)]
    [InlineData("fp4-dq", 4.1, 4.2)]
    [InlineData("int8", 8.0, 8.7)]
    public void Stories260KLoadsQuantizedWithinTheBitBudget(string format, double min, double max)
    {
        using var model = LoraModel.Load(ModelTestFiles.Stories260K, quantization: QuantizationOptions.Parse(format));
        var summary = model.Quantization!;
        Assert.Equal(format, summary.Format);
        Assert.Equal(format, model.QuantizationFormat);
        // 5 blocks × (q, k, v, o, gate, up, down); the tied lm_head stays the embedding.
        Assert.Equal(35, summary.Layers);
        Assert.InRange(model.BaseBitsPerParameter!.Value, min, max);
        Assert.Equal(summary.BitsPerParameter / 8, model.BaseBytesPerParameter!.Value, 12);
        Assert.Equal(35, model.LoadReport.Quantized.Count);
        using var plain = LoraModel.Load(ModelTestFiles.Stories260K);
        Assert.Equal(plain.Parameters, model.Parameters);
        Assert.True(model.MemoryBytes < plain.MemoryBytes);
        Assert.Equal("none", plain.QuantizationFormat);
        Assert.Null(plain.BaseBitsPerParameter);
    }

    [Fact]
    public void QuantizedStories260KComputesCloseToTheFullPrecisionModel()
    {
        using var scope = NewDisposeScope();
        using var plain = LoraModel.Load(ModelTestFiles.Stories260K);
        var ids = tensor(new long[] { 1, 403, 407, 261, 378, 285, 266 }).view(1, -1);
        var expected = plain.Network.forward(ids).log_softmax(-1);
        double Kl(string format)
        {
            using var model = LoraModel.Load(ModelTestFiles.Stories260K, quantization: QuantizationOptions.Parse(format));
            var actual = model.Network.forward(ids).log_softmax(-1);
            return (expected.exp() * (expected - actual)).sum(-1).mean().item<float>();
        }
        // A 260K-parameter model is far more sensitive to 4-bit weights than a large one; the KL stays small, it is not
        // zero (the weights really are quantized), and 8 bits are much closer than 4.
        double nf4 = Kl("nf4-dq"), int8 = Kl("int8");
        Assert.InRange(nf4, 1e-4, 0.5);
        Assert.InRange(int8, 0, nf4 / 10);
    }

    [Fact]
    public void QuantizingTwiceAndBadNamesAreRefused()
    {
        var unknown = Assert.Throws<ArgumentException>(() => QuantizationOptions.Parse("nf3"));
        Assert.Contains("nf4, nf4-dq, fp4, fp4-dq, int8", unknown.Message);
        using var model = LoraModel.Load(ModelTestFiles.Stories260K, quantization: QuantizationOptions.Parse("nf4"));
        var twice = Assert.Throws<AlreadyQuantizedException>(() => ModelQuantizer.Quantize(model.Network, QuantizationOptions.Parse("nf4")));
        Assert.Contains("already quantized", twice.Message);
    }

    [Fact]
    public void AnInMemoryModelQuantizesInPlaceLikeTheLoader()
    {
        using var scope = NewDisposeScope();
        using var loaded = LoraModel.Load(ModelTestFiles.Stories260K, quantization: QuantizationOptions.Parse("fp4-dq"));
        using var plain = LoraModel.Load(ModelTestFiles.Stories260K);
        var summary = ModelQuantizer.Quantize(plain.Network, QuantizationOptions.Parse("fp4-dq"));
        Assert.Equal(loaded.Quantization, summary);
        var a = (QuantizedLinear)loaded.Network.GetModule("model.layers.2.mlp.down_proj");
        var b = (QuantizedLinear)plain.Network.GetModule("model.layers.2.mlp.down_proj");
        TensorAssert.Equal(a.Weight.Data, b.Weight.Data, "codes");
    }
}
