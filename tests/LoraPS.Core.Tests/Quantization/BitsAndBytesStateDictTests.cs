using System.Text;
using LoraPS.Checkpoints;
using LoraPS.Quantization;
using LoraPS.Tests.Checkpoints;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace LoraPS.Tests.Quantization;

public class BitsAndBytesStateDictTests
{
    private const string Key = "model.layers.0.mlp.down_proj.weight";

    private static string Json(Tensor t) => Encoding.UTF8.GetString(BnbReference.Bytes(t));

    private static void AssertTensor(Tensor t, ScalarType dtype, params long[] shape)
    {
        Assert.Equal(dtype, t.dtype);
        Assert.Equal(shape, t.shape);
    }

    [Fact]
    public void Nf4WithDoubleQuantUsesBnbsKeysDtypesAndJson()
    {
        using var scope = NewDisposeScope();
        using var q = QuantizedTensor.Quantize(randn(64, 172).to_type(ScalarType.BFloat16), QuantType.NF4, doubleQuant: true);
        var sd = q.ToStateDict(Key);

        Assert.Equal(new[]
        {
            Key, Key + ".absmax", Key + ".nested_absmax", Key + ".nested_quant_map", Key + ".quant_map", Key + ".quant_state.bitsandbytes__nf4",
        }, sd.Keys.Order(StringComparer.Ordinal).ToArray());
        AssertTensor(sd[Key], ScalarType.Byte, 5504, 1);
        AssertTensor(sd[Key + ".absmax"], ScalarType.Byte, 172);
        AssertTensor(sd[Key + ".nested_absmax"], ScalarType.Float32, 1);
        AssertTensor(sd[Key + ".nested_quant_map"], ScalarType.Float32, 256);
        AssertTensor(sd[Key + ".quant_map"], ScalarType.Float32, 16);

        // json.dumps of bnb's non-tensor items, in as_dict's insertion order, with Python's float repr.
        string offset = BitsAndBytesStateDict.PythonFloatRepr(q.State.Nested!.Offset);
        Assert.Equal(
            "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", \"shape\": [64, 172], " +
            "\"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": " + offset + "}",
            Json(sd[Key + ".quant_state.bitsandbytes__nf4"]));
        Assert.Equal(q.State.Nested.Offset, (float)double.Parse(offset, System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public void Fp4WithoutDoubleQuantAndInt8UseTheirKeys()
    {
        using var scope = NewDisposeScope();
        using var fp4 = QuantizedTensor.Quantize(randn(100), QuantType.FP4);
        var sd = fp4.ToStateDict("w");
        Assert.Equal(new[] { "w", "w.absmax", "w.quant_map", "w.quant_state.bitsandbytes__fp4" }, sd.Keys.Order(StringComparer.Ordinal).ToArray());
        Assert.Equal(ScalarType.Float32, sd["w.absmax"].dtype);
        Assert.Equal("{\"quant_type\": \"fp4\", \"blocksize\": 64, \"dtype\": \"float32\", \"shape\": [100]}", Json(sd["w.quant_state.bitsandbytes__fp4"]));

        using var int8 = QuantizedTensor.Quantize(randn(6, 10), QuantType.Int8);
        var sd8 = int8.ToStateDict("lm.q_proj.weight");
        Assert.Equal(new[] { "lm.q_proj.SCB", "lm.q_proj.weight", "lm.q_proj.weight_format" }, sd8.Keys.Order(StringComparer.Ordinal).ToArray());
        AssertTensor(sd8["lm.q_proj.weight"], ScalarType.Int8, 6, 10);
        AssertTensor(sd8["lm.q_proj.SCB"], ScalarType.Float32, 6);
        Assert.Equal((ScalarType.Byte, 0L), (sd8["lm.q_proj.weight_format"].dtype, sd8["lm.q_proj.weight_format"].dim()));
        Assert.Throws<ArgumentException>(() => int8.ToStateDict("lm.q_proj.kernel"));
    }

    [Theory]
    [InlineData(QuantType.NF4, true)]
    [InlineData(QuantType.NF4, false)]
    [InlineData(QuantType.FP4, true)]
    [InlineData(QuantType.Int8, false)]
    public void RoundTripsThroughASafetensorsFile(QuantType type, bool doubleQuant)
    {
        using var scope = NewDisposeScope();
        using var folder = new ScratchFolder();
        using var original = QuantizedTensor.Quantize(randn(new long[] { 33, 70 }, generator: new Generator(9)), type, doubleQuant: doubleQuant);
        var entries = original.ToStateDict(Key);
        entries["model.norm.weight"] = ones(70);
        string path = folder.File("q.safetensors");
        SafetensorsWriter.Write(path, entries);

        using var file = SafetensorsFile.Open(path);
        using var read = QuantizedTensor.Read(file, Key);
        Assert.Equal(type, read.QuantType);
        Assert.Equal(original.Shape, read.Shape);
        Assert.Equal(doubleQuant, read.IsDoubleQuantized);
        Assert.Equal(original.StorageBytes, read.StorageBytes);
        Assert.Equal(BnbReference.Bits(BnbReference.Floats(original.Dequantize(ScalarType.Float32))), BnbReference.Bits(BnbReference.Floats(read.Dequantize(ScalarType.Float32))));
        Assert.Equal(
            file.Entries.Select(e => e.Name).Where(k => k != "model.norm.weight" && k != Key).Order(StringComparer.Ordinal),
            file.Entries.Select(e => e.Name).Where(BitsAndBytesStateDict.IsAuxiliaryKey).Order(StringComparer.Ordinal));
        Assert.True(BitsAndBytesStateDict.IsQuantizedWeight(file.Entries.Select(e => e.Name), Key));
        Assert.False(BitsAndBytesStateDict.IsQuantizedWeight(file.Entries.Select(e => e.Name), "model.norm.weight"));
    }

    [Fact]
    public void FromStateDictSharesStorageAndOutlivesTheCallersTensors()
    {
        using var original = QuantizedTensor.Quantize(randn(8, 64), QuantType.NF4, doubleQuant: true);
        var expected = BnbReference.Floats(original.Dequantize());
        QuantizedTensor read;
        using (var scope = NewDisposeScope())
        {
            var sd = original.ToStateDict("w").ToDictionary(kv => kv.Key, kv => kv.Value.clone());
            read = QuantizedTensor.FromStateDict(sd, "w");
        }
        using (read)
        {
            Assert.Equal(expected, BnbReference.Floats(read.Dequantize()));
        }
    }

    [Fact]
    public void MalformedEntriesGiveErrorsNamingTheKey()
    {
        using var scope = NewDisposeScope();
        using var q = QuantizedTensor.Quantize(randn(4, 64), QuantType.NF4, doubleQuant: true);

        InvalidDataException Fails(Action<Dictionary<string, Tensor>> damage)
        {
            var sd = q.ToStateDict("w");
            damage(sd);
            return Assert.Throws<InvalidDataException>(() => QuantizedTensor.FromStateDict(sd, "w"));
        }
        Assert.Contains("'w.quant_map'", Fails(sd => sd.Remove("w.quant_map")).Message);
        Assert.Contains("'w.nested_quant_map'", Fails(sd => sd.Remove("w.nested_quant_map")).Message);
        Assert.Contains("needs 128", Fails(sd => sd["w"] = zeros(new long[] { 100, 1 }, ScalarType.Byte)).Message);
        Assert.Contains("not valid UTF-8 JSON", Fails(sd => sd["w.quant_state.bitsandbytes__nf4"] = tensor(Encoding.UTF8.GetBytes("{oops"))).Message);
        Assert.Contains("no 'blocksize'", Fails(sd => sd["w.quant_state.bitsandbytes__nf4"] = tensor(Encoding.UTF8.GetBytes("{\"quant_type\": \"nf4\"}"))).Message);
        Assert.Contains("contradicts", Fails(sd =>
        {
            sd["w.quant_state.bitsandbytes__fp4"] = sd["w.quant_state.bitsandbytes__nf4"];
            sd.Remove("w.quant_state.bitsandbytes__nf4");
        }).Message);
        Assert.Contains("table", Fails(sd => sd["w.quant_map"] = tensor(Codebooks.FP4.ToArray())).Message);
        Assert.Contains("not a bitsandbytes-quantized weight", Assert.Throws<InvalidDataException>(() =>
            QuantizedTensor.FromStateDict(new Dictionary<string, Tensor> { ["w"] = randn(3) }, "w")).Message);
    }

    [Theory]
    [InlineData(0.0, "0.0")]
    [InlineData(1.0, "1.0")]
    [InlineData(0.1, "0.1")]
    [InlineData(1e-05, "1e-05")]
    [InlineData(0.0001, "0.0001")]
    [InlineData(0.00012, "0.00012")]
    [InlineData(1.5e-07, "1.5e-07")]
    [InlineData(123456789.0, "123456789.0")]
    [InlineData(1e16, "1e+16")]
    [InlineData(1234567890123456.0, "1234567890123456.0")]
    [InlineData(1e22, "1e+22")]
    [InlineData(5e-324, "5e-324")]
    public void PythonFloatReprMatchesPython(double value, string python)
    {
        Assert.Equal(python, BitsAndBytesStateDict.PythonFloatRepr(value));
    }

    [Fact]
    public void PythonFloatReprOfFloat32Values()
    {
        // repr(float(numpy.float32(v))), computed with CPython.
        Assert.Equal("0.01234500017017126", BitsAndBytesStateDict.PythonFloatRepr(0.012345f));
        Assert.Equal("0.10000000149011612", BitsAndBytesStateDict.PythonFloatRepr(0.1f));
        Assert.Equal("3.097460985183716", BitsAndBytesStateDict.PythonFloatRepr(3.097460985183716f));
        Assert.Equal("-2.499999936844688e-05", BitsAndBytesStateDict.PythonFloatRepr(-2.5e-5f));
    }
}
