using LoraPS.Quantization;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LoraPS.Tests.Quantization;

public class DoubleQuantTests
{
    [Fact]
    public void NestedStateIsBnbsQuantizeBlockwiseOfTheCentredAbsmax()
    {
        using var scope = NewDisposeScope();
        // 300 first-level blocks: one full 256-block and a short one of 44.
        var weight = randn(new long[] { 300, 64 }, generator: new Generator(7)) * linspace(0.01, 3, 300).unsqueeze(1);
        using var plain = QuantizedTensor.Quantize(weight, QuantType.NF4);
        using var dq = QuantizedTensor.Quantize(weight, QuantType.NF4, doubleQuant: true);

        var absmax = plain.State.Absmax;
        float offset = absmax.mean().item<float>();
        var centred = BnbReference.Floats(absmax - offset);
        var (codes, nestedAbsmax) = BnbReference.QuantizeBlockwise(centred, 256, Codebooks.DynamicSigned);

        var nested = Assert.IsType<NestedQuantState>(dq.State.Nested);
        Assert.Equal(offset, nested.Offset);
        Assert.Equal(256, nested.BlockSize);
        Assert.Equal(ScalarType.Byte, dq.State.Absmax.dtype);
        Assert.Equal(codes, BnbReference.Bytes(dq.State.Absmax));
        Assert.Equal(BnbReference.Bits(nestedAbsmax), BnbReference.Bits(BnbReference.Floats(nested.Absmax)));
        Assert.Equal(BnbReference.Bits(Codebooks.DynamicSigned), BnbReference.Bits(BnbReference.Floats(nested.Code)));
        // The 4-bit codes are computed from the exact absmax, so they are the same with and without DQ.
        Assert.Equal(BnbReference.Bytes(plain.Data), BnbReference.Bytes(dq.Data));

        // Reconstruction: code8[q] · nestedAbsmax[i / 256] + offset, in float32.
        var expected = codes.Select((c, i) => Codebooks.DynamicSigned[c] * nestedAbsmax[i / 256] + offset).ToArray();
        Assert.Equal(BnbReference.Bits(expected), BnbReference.Bits(BnbReference.Floats(dq.State.DequantizeAbsmax())));
    }

    [Fact]
    public void RoundTripErrorIsBoundedByTheDynamicMapSpacing()
    {
        using var scope = NewDisposeScope();
        var weight = randn(new long[] { 512, 256 }, generator: new Generator(11)) * 0.02;
        using var plain = QuantizedTensor.Quantize(weight, QuantType.NF4);
        using var dq = QuantizedTensor.Quantize(weight, QuantType.NF4, doubleQuant: true);

        // The signed dynamic map's widest gap is 0.0140625 (next to ±1), so a centred absmax moves by at most half of
        // that times its 256-block's absmax.
        var absmaxError = (dq.State.DequantizeAbsmax() - plain.State.Absmax).abs().view(-1);
        var nestedAbsmax = dq.State.Nested!.Absmax.repeat_interleave(256).narrow(0, 0, absmaxError.shape[0]);
        Assert.True(absmaxError.le(nestedAbsmax * 0.00704 + 1e-9).all().item<bool>());

        // Each weight is table[code] · absmax, so DQ changes it by at most |Δabsmax| of its block.
        var difference = (dq.Dequantize() - plain.Dequantize()).abs().view(-1, 64);
        Assert.True(difference.le(absmaxError.unsqueeze(1) + 1e-9).all().item<bool>());
        double relative = ((dq.Dequantize() - weight).norm() / weight.norm()).item<float>();
        double relativePlain = ((plain.Dequantize() - weight).norm() / weight.norm()).item<float>();
        Assert.InRange(relative, relativePlain * 0.99, relativePlain * 1.01);
        Assert.InRange(relativePlain, 0.05, 0.15); // NF4 on Gaussian weights: about 10% RMS error
    }

    [Theory]
    [InlineData(QuantType.NF4, false, 4.5)]
    [InlineData(QuantType.FP4, false, 4.5)]
    [InlineData(QuantType.NF4, true, 4.127)]
    [InlineData(QuantType.FP4, true, 4.127)]
    public void BitsPerParameterComeFromTheStoredBytes(QuantType type, bool doubleQuant, double expected)
    {
        using var scope = NewDisposeScope();
        long[] shape = [256, 1024];
        using var q = QuantizedTensor.Quantize(randn(shape), type, doubleQuant: doubleQuant);
        long n = 256 * 1024;
        long bytes = n / 2 + (doubleQuant ? n / 64 + n / 64 / 256 * 4 + 4 : n / 64 * 4);
        Assert.Equal(bytes, q.StorageBytes);
        Assert.Equal(bytes, QuantizedTensor.EstimateStorageBytes(shape, type, doubleQuant: doubleQuant));
        Assert.Equal(8.0 * bytes / n, q.BitsPerParameter, 12);
        Assert.Equal(expected, q.BitsPerParameter, 3);
        Assert.True(q.BitsPerParameter <= (doubleQuant ? 4.2 : 4.6));
        Assert.Equal(q.BitsPerParameter / 8, q.BytesPerParameter, 12);
    }

    [Fact]
    public void ConstantWeightsSurviveDoubleQuantization()
    {
        using var scope = NewDisposeScope();
        // Every block has the same absmax, so absmax − mean is all zero: the nested block is all-zero too.
        var weight = full(new long[] { 4, 64 }, 0.5f);
        using var q = QuantizedTensor.Quantize(weight, QuantType.FP4, doubleQuant: true);
        Assert.Equal(0.5f, q.State.Nested!.Offset);
        Assert.True(q.Dequantize().eq(weight).all().item<bool>());
    }
}
