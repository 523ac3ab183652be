using LoraPS.Checkpoints;
using LoraPS.Quantization;
using LoraPS.Tests.Checkpoints;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LoraPS.Tests.Quantization;

public class Blockwise4bitTests
{
    private static readonly string Nf4Fixture = Path.Combine(CheckpointTestFiles.RepoRoot, "tests", "fixtures", "nf4", "nf4_reference.safetensors");

    [Fact]
    public void Nf4MatchesTheBitsandbytesFixtureBitForBit()
    {
        using var scope = NewDisposeScope();
        using var file = SafetensorsFile.Open(Nf4Fixture);
        using var q = QuantizedTensor.Quantize(file.ReadTensor("input"), QuantType.NF4);

        Assert.Equal(new long[] { 64, 1 }, q.Data.shape);
        Assert.Equal(ScalarType.Byte, q.Data.dtype);
        Assert.Equal(BnbReference.Bytes(file.ReadTensor("packed")), BnbReference.Bytes(q.Data));
        Assert.Equal(BnbReference.Bits(BnbReference.Floats(file.ReadTensor("absmax"))), BnbReference.Bits(BnbReference.Floats(q.State.Absmax)));
        Assert.Equal(BnbReference.Bytes(file.ReadTensor("codes_unpacked")), Unpack(BnbReference.Bytes(q.Data), 128));
        var dequantized = q.Dequantize();
        Assert.Equal(new long[] { 1, 128 }, dequantized.shape);
        Assert.Equal(BnbReference.Bits(BnbReference.Floats(file.ReadTensor("dequantized"))), BnbReference.Bits(BnbReference.Floats(dequantized)));
        Assert.Equal(BnbReference.Bits(Codebooks.NF4), BnbReference.Bits(BnbReference.Floats(file.ReadTensor("code"))));
    }

    [Fact]
    public void Fp4HandCheckedVector()
    {
        using var scope = NewDisposeScope();
        // absmax 12, so x / 12 hits every FP4 magnitude exactly; 0.5 / 12 = 0.0417 is nearest the subnormal 0.0052.
        float[] x = [12, 8, 6, 4, 3, 2, 0.0625f, 0, -0.0625f, -2, -3, -4, -6, -8, -12, 0.5f];
        using var q = QuantizedTensor.Quantize(tensor(x), QuantType.FP4);
        byte[] expectedCodes = [3, 2, 5, 4, 7, 6, 1, 0, 9, 14, 15, 12, 13, 10, 11, 1];
        Assert.Equal(expectedCodes, Unpack(BnbReference.Bytes(q.Data), x.Length));
        Assert.Equal(new byte[] { 0x32, 0x54, 0x76, 0x10, 0x9E, 0xFC, 0xDA, 0xB1 }, BnbReference.Bytes(q.Data));
        Assert.Equal(12f, q.State.Absmax.item<float>());
        float[] back = BnbReference.Floats(q.Dequantize());
        Assert.Equal(x.Take(15).ToArray(), back.Take(15).ToArray());
        Assert.Equal(0.0625f, back[15]);
    }

    [Fact]
    public void FirstElementGoesInTheHighNibble()
    {
        using var scope = NewDisposeScope();
        // NF4: -1 is code 0, 1 is code 15, 0 is code 7 (also the padding code of an odd count).
        Assert.Equal(new byte[] { 0x0F }, BnbReference.Bytes(QuantizedTensor.Quantize(tensor(new[] { -1f, 1f }), QuantType.NF4).Data));
        Assert.Equal(new byte[] { 0xF0 }, BnbReference.Bytes(QuantizedTensor.Quantize(tensor(new[] { 1f, -1f }), QuantType.NF4).Data));
        Assert.Equal(new byte[] { 0xF0, 0xF7 }, BnbReference.Bytes(QuantizedTensor.Quantize(tensor(new[] { 1f, -1f, 1f }), QuantType.NF4).Data));
        Assert.Equal(new byte[] { 0x3B, 0x30 }, BnbReference.Bytes(QuantizedTensor.Quantize(tensor(new[] { 1f, -1f, 1f }), QuantType.FP4).Data));
    }

    [Fact]
    public void TiesGoToTheFirstTableIndexLikeArgmin()
    {
        using var scope = NewDisposeScope();
        // A block max of 1 keeps x unscaled. Each x is exactly halfway between two table values (an exact float32 tie),
        // so the smaller table index must win; one ulp toward the other value flips it.
        void Check(QuantType type, int a, int b)
        {
            var table = Codebooks.For(type);
            float mid = (table[a] + table[b]) / 2f;
            Assert.Equal(Math.Abs(mid - table[a]), Math.Abs(table[b] - mid)); // a true float32 tie
            var q = QuantizedTensor.Quantize(tensor(new[] { 1f, mid }), type);
            Assert.Equal(Math.Min(a, b), Unpack(BnbReference.Bytes(q.Data), 2)[1]);
            float towardB = table[a] < table[b] ? MathF.BitIncrement(mid) : MathF.BitDecrement(mid);
            var nudged = QuantizedTensor.Quantize(tensor(new[] { 1f, towardB }), type);
            Assert.Equal(b, Unpack(BnbReference.Bytes(nudged.Data), 2)[1]);
        }
        Check(QuantType.NF4, 7, 8);
        Check(QuantType.NF4, 6, 7);
        Check(QuantType.FP4, 0, 1);
        Check(QuantType.FP4, 0, 9);
    }

    public static TheoryData<QuantType, long[], ScalarType> Shapes => new()
    {
        { QuantType.NF4, [100], ScalarType.Float32 },
        { QuantType.NF4, [101], ScalarType.Float32 },
        { QuantType.FP4, [1], ScalarType.Float32 },
        { QuantType.FP4, [3, 67], ScalarType.BFloat16 },
        { QuantType.NF4, [64, 172], ScalarType.Float16 },
        { QuantType.NF4, [2, 5, 4096], ScalarType.Float32 },
        { QuantType.FP4, [700, 601], ScalarType.Float32 },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void MatchesTheScalarBitsandbytesTranscriptionOnAnyShape(QuantType type, long[] shape, ScalarType dtype)
    {
        using var scope = NewDisposeScope();
        var table = Codebooks.For(type);
        var weight = BnbReference.AwkwardWeights(shape, seed: (int)shape.Sum(), table).to_type(dtype);
        var x = BnbReference.Floats(weight);
        var (codes, absmax) = BnbReference.QuantizeBlockwise(x, 64, table);

        using var q = QuantizedTensor.Quantize(weight, type);
        Assert.Equal(dtype, q.DType);
        Assert.Equal(shape, q.Shape);
        Assert.Equal(new long[] { (x.Length + 1) / 2, 1 }, q.Data.shape);
        Assert.Equal(q.StorageBytes, QuantizedTensor.EstimateStorageBytes(shape, type));
        Assert.Equal(BnbReference.Bits(absmax), BnbReference.Bits(BnbReference.Floats(q.State.Absmax)));
        Assert.Equal(BnbReference.Pack(codes, table), BnbReference.Bytes(q.Data));

        var expected = BnbReference.Dequantize(codes, absmax, 64, table);
        var f32 = q.Dequantize(ScalarType.Float32);
        Assert.Equal(shape, f32.shape);
        Assert.Equal(BnbReference.Bits(expected), BnbReference.Bits(BnbReference.Floats(f32)));
        // Other dtypes round the float32 product once.
        Assert.Equal(BnbReference.Bits(BnbReference.Floats(f32.to_type(dtype))), BnbReference.Bits(BnbReference.Floats(q.Dequantize())));
    }

    [Fact]
    public void RealStories260KDownProjectionRoundTripsWithinTheNf4GridError()
    {
        using var scope = NewDisposeScope();
        using var file = SafetensorsFile.Open(CheckpointTestFiles.Stories260K);
        var weight = file.ReadTensor("model.layers.0.mlp.down_proj.weight");
        Assert.Equal(new long[] { 64, 172 }, weight.shape);
        var table = Codebooks.NF4;
        var (codes, absmax) = BnbReference.QuantizeBlockwise(BnbReference.Floats(weight), 64, table);
        using var q = QuantizedTensor.Quantize(weight, QuantType.NF4);
        Assert.Equal(BnbReference.Pack(codes, table), BnbReference.Bytes(q.Data));
        // NF4's widest gap is between -1 and -0.696, so no weight moves by more than 0.152 · its block's absmax.
        var error = (q.Dequantize() - weight).abs().view(-1, 64);
        var bound = q.State.Absmax.unsqueeze(1) * 0.1520;
        Assert.True(error.le(bound).all().item<bool>());
        Assert.Equal(4.5, q.BitsPerParameter, 12);
    }

    [Fact]
    public void DequantizeIntoAReusedBufferGivesIdenticalResults()
    {
        using var scope = NewDisposeScope();
        long[] shape = [96, 130];
        using var a = QuantizedTensor.Quantize(randn(shape, generator: new Generator(1)), QuantType.NF4, doubleQuant: true);
        using var b = QuantizedTensor.Quantize(randn(shape, generator: new Generator(2)), QuantType.FP4);
        var expectedA = BnbReference.Bits(BnbReference.Floats(a.Dequantize()));
        var expectedB = BnbReference.Bits(BnbReference.Floats(b.Dequantize()));

        // One flat scratch tensor, viewed to the weight's shape, reused for several layers and steps.
        var scratch = full(shape[0] * shape[1] + 10, float.NaN);
        var view = scratch.narrow(0, 5, shape[0] * shape[1]).view(shape);
        for (int step = 0; step < 2; step++)
        {
            a.DequantizeInto(view);
            Assert.Equal(expectedA, BnbReference.Bits(BnbReference.Floats(view)));
            b.DequantizeInto(view);
            Assert.Equal(expectedB, BnbReference.Bits(BnbReference.Floats(view)));
        }
        Assert.True(scratch.narrow(0, 0, 5).isnan().all().item<bool>());

        var bf16 = empty(shape, ScalarType.BFloat16);
        a.DequantizeInto(bf16);
        Assert.True(bf16.eq(a.Dequantize().to_type(ScalarType.BFloat16)).all().item<bool>());
    }

    [Fact]
    public void DequantizeIntoRejectsUnsuitableBuffers()
    {
        using var scope = NewDisposeScope();
        using var q = QuantizedTensor.Quantize(randn(8, 64), QuantType.NF4);
        Assert.Contains("shape", Assert.Throws<ArgumentException>(() => q.DequantizeInto(empty(64, 8))).Message);
        Assert.Contains("contiguous", Assert.Throws<ArgumentException>(() => q.DequantizeInto(empty(64, 8).t())).Message);
        Assert.Contains("float32, bfloat16 and float16", Assert.Throws<ArgumentException>(() => q.DequantizeInto(empty(new long[] { 8, 64 }, ScalarType.Int32))).Message);
        q.Dispose();
        Assert.Throws<ObjectDisposedException>(() => q.Dequantize());
    }

    [Fact]
    public void BadInputsGiveClearErrors()
    {
        using var scope = NewDisposeScope();
        var w = randn(4, 64);
        Assert.Throws<ArgumentOutOfRangeException>(() => QuantizedTensor.Quantize(w, (QuantType)42));
        Assert.Contains("power of two", Assert.Throws<ArgumentOutOfRangeException>(() => QuantizedTensor.Quantize(w, QuantType.NF4, blockSize: 0)).Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => QuantizedTensor.Quantize(w, QuantType.NF4, blockSize: 48));
        Assert.Throws<ArgumentOutOfRangeException>(() => QuantizedTensor.Quantize(w, QuantType.NF4, blockSize: 8192));
        Assert.Contains("no elements", Assert.Throws<ArgumentException>(() => QuantizedTensor.Quantize(empty(0, 64), QuantType.NF4)).Message);
        Assert.Contains("scalar", Assert.Throws<ArgumentException>(() => QuantizedTensor.Quantize(tensor(1f), QuantType.NF4)).Message);
        Assert.Contains("float32, bfloat16 and float16", Assert.Throws<ArgumentException>(() => QuantizedTensor.Quantize(ones(64, ScalarType.Int32), QuantType.NF4)).Message);
        Assert.Throws<ArgumentException>(() => QuantizedTensor.Quantize(w, QuantType.NF4, dtype: ScalarType.Float64));
        var nan = w.clone();
        nan[2, 5] = tensor(float.NaN);
        Assert.Contains("block 2 contains NaN", Assert.Throws<ArgumentException>(() => QuantizedTensor.Quantize(nan, QuantType.NF4)).Message);
        Assert.Contains("Int8", Assert.Throws<ArgumentException>(() => QuantizedTensor.Quantize(w, QuantType.Int8, doubleQuant: true)).Message);
    }

    [Fact]
    public void AllZeroBlocksKeepBitsandbytesCodeZeroAndDequantizeToZero()
    {
        using var scope = NewDisposeScope();
        var w = cat([zeros(64), ones(64)]);
        using var q = QuantizedTensor.Quantize(w, QuantType.NF4);
        // bnb scales a zero block by 1/0 and its NaN lands on code 0 (both in the reference argmin and the CUDA tree).
        Assert.All(BnbReference.Bytes(q.Data).Take(32), b => Assert.Equal(0, b));
        Assert.All(BnbReference.Bytes(q.Data).Skip(32), b => Assert.Equal(0xFF, b));
        Assert.True(q.Dequantize().eq(w).all().item<bool>());
    }

    [Fact]
    public void QuantizingDoesNotTouchTheWeightOrItsGradientState()
    {
        using var scope = NewDisposeScope();
        var w = randn(64, 64).requires_grad_(true);
        var copy = w.detach().clone();
        using var q = QuantizedTensor.Quantize(w, QuantType.NF4, doubleQuant: true);
        Assert.True(w.detach().eq(copy).all().item<bool>());
        Assert.False(q.Data.requires_grad);
        Assert.False(q.Dequantize().requires_grad);
    }

    internal static byte[] Unpack(byte[] packed, int count)
    {
        var codes = new byte[count];
        for (int i = 0; i < count; i++)
        {
            codes[i] = (byte)(i % 2 == 0 ? packed[i / 2] >> 4 : packed[i / 2] & 0xF);
        }
        return codes;
    }
}
