using LoraPS.Quantization;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LoraPS.Tests.Quantization;

public class Int8AndOptimizerStateTests
{
    [Theory]
    [InlineData(new long[] { 64, 172 })]
    [InlineData(new long[] { 100 })]
    [InlineData(new long[] { 3, 4, 5000 })]
    public void Int8MatchesBnbVectorwiseQuantAndDequant(long[] shape)
    {
        using var scope = NewDisposeScope();
        var weight = randn(shape, generator: new Generator(3)) * 0.05;
        weight.view(-1, shape[^1])[0].zero_(); // an all-zero row
        var x = BnbReference.Floats(weight);
        var (codes, stats) = BnbReference.QuantizeRows(x, (int)shape[^1]);

        using var q = QuantizedTensor.Quantize(weight, QuantType.Int8);
        Assert.Equal(ScalarType.Int8, q.Data.dtype);
        Assert.Equal(shape, q.Data.shape);
        Assert.Equal(codes, q.Data.contiguous().data<sbyte>().ToArray());
        Assert.Equal(BnbReference.Bits(stats), BnbReference.Bits(BnbReference.Floats(q.State.Absmax)));
        Assert.Equal((int)shape[^1], q.BlockSize);

        // int8_vectorwise_dequant: A * stats.view(-1, 1) * 7.874015718698502e-3, in float32.
        var expected = codes.Select((c, i) => c * stats[i / (int)shape[^1]] * (float)7.874015718698502e-3).ToArray();
        var back = q.Dequantize();
        Assert.Equal(BnbReference.Bits(expected), BnbReference.Bits(BnbReference.Floats(back)));
        // Rounding to the nearest of 255 levels: at most half a step, s/254, plus float error.
        var rows = weight.view(-1, shape[^1]);
        var bound = q.State.Absmax.unsqueeze(1) / 254 * 1.0001 + 1e-12;
        Assert.True((back.view(-1, shape[^1]) - rows).abs().le(bound).all().item<bool>());
        Assert.Equal(8 + 32.0 / shape[^1], q.BitsPerParameter, 9);
        Assert.Equal(q.StorageBytes, QuantizedTensor.EstimateStorageBytes(shape, QuantType.Int8));
    }

    [Fact]
    public void Int8DequantizesIntoReusedLowPrecisionBuffers()
    {
        using var scope = NewDisposeScope();
        using var q = QuantizedTensor.Quantize(randn(40, 50).to_type(ScalarType.BFloat16), QuantType.Int8);
        Assert.Equal(ScalarType.BFloat16, q.DType);
        var f32 = q.Dequantize(ScalarType.Float32);
        var buffer = empty(new long[] { 40, 50 }, ScalarType.Float16);
        q.DequantizeInto(buffer);
        Assert.True(buffer.eq(f32.to_type(ScalarType.Float16)).all().item<bool>());
        Assert.True(q.Dequantize().eq(f32.to_type(ScalarType.BFloat16)).all().item<bool>());
    }

    [Theory]
    [InlineData(DynamicMap.Signed)]
    [InlineData(DynamicMap.Unsigned)]
    public void OptimizerStatesMatchBnbQuantizeBlockwise(DynamicMap map)
    {
        using var scope = NewDisposeScope();
        // Adam-like magnitudes spanning several decades, 5000 elements: 19 full blocks of 256 and one of 136.
        var values = randn(new long[] { 50, 100 }, generator: new Generator(5)) * logspace(-8, -1, 5000).view(50, 100);
        if (map == DynamicMap.Unsigned)
        {
            values = values.square();
        }
        var table = map == DynamicMap.Signed ? Codebooks.DynamicSigned : Codebooks.DynamicUnsigned;
        var (codes, absmax) = BnbReference.QuantizeBlockwise(BnbReference.Floats(values), 256, table);

        using var state = map == DynamicMap.Signed ? OptimizerState8bit.FirstMoment([50, 100]) : OptimizerState8bit.SecondMoment([50, 100]);
        Assert.True(state.Dequantize().eq(0).all().item<bool>());
        var codesTensor = state.Codes;
        state.Requantize(values);
        Assert.Same(codesTensor, state.Codes); // requantized in place
        Assert.Equal(codes, BnbReference.Bytes(state.Codes));
        Assert.Equal(BnbReference.Bits(absmax), BnbReference.Bits(BnbReference.Floats(state.Absmax)));

        var back = state.Dequantize();
        Assert.Equal(BnbReference.Bits(BnbReference.Dequantize(codes, absmax, 256, table)), BnbReference.Bits(BnbReference.Floats(back)));
        // The dynamic map keeps relative precision over decades: every value is within 1/128 of its block's absmax,
        // and the typical relative error is a few percent even for values far below the block max.
        var blockAbsmax = state.Absmax.repeat_interleave(256).narrow(0, 0, 5000).view(50, 100);
        Assert.True((back - values).abs().le(blockAbsmax / 128).all().item<bool>());
        Assert.Equal(5000 + 20 * 4, state.StorageBytes);
    }

    [Fact]
    public void OptimizerStateConventionsAndErrors()
    {
        using var scope = NewDisposeScope();
        Assert.False(OptimizerState8bit.Uses8bitState(4095));
        Assert.True(OptimizerState8bit.Uses8bitState(4096));
        using var m = Blockwise8bitTensor.Quantize(randn(300), DynamicMap.Signed, 256);
        Assert.Equal(256, m.BlockSize);
        Assert.Equal(new long[] { 2 }, m.Absmax.shape);
        Assert.Contains("shape", Assert.Throws<ArgumentException>(() => m.Requantize(randn(301))).Message);
        Assert.Contains("shape", Assert.Throws<ArgumentException>(() => m.DequantizeInto(empty(299))).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => Blockwise8bitTensor.Zeros([10], DynamicMap.Signed, 0));
        Assert.Throws<ArgumentException>(() => Blockwise8bitTensor.Zeros([], DynamicMap.Signed, 256));
        Assert.Throws<ArgumentOutOfRangeException>(() => Blockwise8bitTensor.Zeros([10], (DynamicMap)5, 256));
        // Zeros quantize to the map's zero (index 127 signed), a zero block to bnb's code 0; both read back as 0.
        using var z = Blockwise8bitTensor.Quantize(cat([zeros(256), tensor(new[] { 0f, 1f, -1f })]), DynamicMap.Signed, 256);
        Assert.Equal(new byte[] { 0, 127, 255, 0 }, BnbReference.Bytes(z.Codes).Skip(255).ToArray());
        Assert.Equal(new[] { 0f, 0f, 1f, Codebooks.DynamicSigned[0] }, BnbReference.Floats(z.Dequantize()).Skip(255).ToArray());
    }
}
