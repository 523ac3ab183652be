using System.Globalization;
using System.Text;
using System.Text.Json;
using LoraPS.Checkpoints;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Quantization;

/// <summary>
/// The state-dict keys bitsandbytes uses for quantized weights, so quantized checkpoints are interchangeable with
/// transformers + bitsandbytes. For a 4-bit weight saved under <c>W</c> (e.g. <c>model.layers.0.mlp.down_proj.weight</c>):
/// <code>
///   W                                    uint8 [(n+1)/2, 1]  packed codes
///   W.absmax                             float32 [blocks], or uint8 [blocks] with double quantization
///   W.quant_map                          float32 [16]
///   W.nested_absmax                      float32 [ceil(blocks/256)]     (double quantization only)
///   W.nested_quant_map                   float32 [256]                  (double quantization only)
///   W.quant_state.bitsandbytes__nf4      uint8 [len]: UTF-8 JSON of quant_type, blocksize, dtype, shape
///                                        (+ nested_blocksize, nested_dtype, nested_offset); "__fp4" for FP4
/// </code>
/// and for an Int8 weight saved under <c>P.weight</c>: <c>P.weight</c> (int8), <c>P.SCB</c> (float32 [rows]),
/// <c>P.weight_format</c> (uint8 scalar 0 = row-major).
/// </summary>
/// <remarks>
/// Source: bitsandbytes <c>functional.py</c> <c>QuantState.as_dict(packed=True)</c> / <c>QuantState.from_dict</c> and
/// <c>utils.pack_dict_to_tensor</c> (<c>json.dumps</c> → UTF-8 → uint8 tensor); <c>nn/modules.py</c>
/// <c>Linear4bit._save_to_state_dict</c> (prefix + "weight." + key) and <c>Linear8bitLt._save_to_state_dict</c>
/// (prefix + "SCB", prefix + "weight_format"). Checked against bnb 0.43–0.49. The JSON is written byte-for-byte as
/// Python's <c>json.dumps</c> writes it (", " and ": " separators, Python float repr).
/// </remarks>
public static class BitsAndBytesStateDict
{
    public const string AbsmaxSuffix = ".absmax";
    public const string QuantMapSuffix = ".quant_map";
    public const string NestedAbsmaxSuffix = ".nested_absmax";
    public const string NestedQuantMapSuffix = ".nested_quant_map";
    public const string QuantStateSuffix = ".quant_state.bitsandbytes__";
    public const string Int8ScaleName = "SCB";
    public const string Int8FormatName = "weight_format";

    /// <summary>
    /// True for a key that is bitsandbytes bookkeeping beside a quantized weight rather than a parameter of its own (the
    /// absmax, quant maps, packed quant state, SCB and weight_format entries); model loaders skip these.
    /// </summary>
    public static bool IsAuxiliaryKey(string key) =>
        key.EndsWith(AbsmaxSuffix, StringComparison.Ordinal) || key.EndsWith(QuantMapSuffix, StringComparison.Ordinal) ||
        key.EndsWith(NestedAbsmaxSuffix, StringComparison.Ordinal) || key.EndsWith(NestedQuantMapSuffix, StringComparison.Ordinal) ||
        key.Contains(QuantStateSuffix, StringComparison.Ordinal) ||
        key == Int8ScaleName || key.EndsWith("." + Int8ScaleName, StringComparison.Ordinal) ||
        key == Int8FormatName || key.EndsWith("." + Int8FormatName, StringComparison.Ordinal);

    /// <summary>True when <paramref name="keys"/> hold a bitsandbytes-quantized weight under <paramref name="weightKey"/>.</summary>
    public static bool IsQuantizedWeight(IEnumerable<string> keys, string weightKey)
    {
        string? int8Scale = Int8Prefix(weightKey) is { } prefix ? prefix + Int8ScaleName : null;
        return keys.Any(k => k.StartsWith(weightKey + QuantStateSuffix, StringComparison.Ordinal) || k == int8Scale);
    }

    internal static Dictionary<string, Tensor> Write(QuantizedTensor q, string weightKey)
    {
        ArgumentException.ThrowIfNullOrEmpty(weightKey);
        var s = q.State;
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        if (q.QuantType == QuantType.Int8)
        {
            string prefix = Int8Prefix(weightKey)
                ?? throw new ArgumentException($"bitsandbytes stores an Int8 weight's scales beside it as '<module>.SCB', so its key must end in 'weight'; '{weightKey}' does not.", nameof(weightKey));
            result[weightKey] = q.Data.detach();
            result[prefix + Int8ScaleName] = s.Absmax.detach();
            result[prefix + Int8FormatName] = tensor((byte)0);
            return result;
        }
        result[weightKey] = q.Data.detach();
        result[weightKey + AbsmaxSuffix] = s.Absmax.detach();
        result[weightKey + QuantMapSuffix] = s.Code!.detach();
        if (s.Nested is { } nested)
        {
            result[weightKey + NestedAbsmaxSuffix] = nested.Absmax.detach();
            result[weightKey + NestedQuantMapSuffix] = nested.Code.detach();
        }
        byte[] json = Encoding.UTF8.GetBytes(QuantStateJson(q));
        result[weightKey + QuantStateSuffix + q.QuantType.ToBitsAndBytesName()] = tensor(json, ScalarType.Byte);
        return result;
    }

    /// <summary>The packed quant-state JSON, exactly as <c>json.dumps</c> writes bnb's non-tensor items.</summary>
    internal static string QuantStateJson(QuantizedTensor q)
    {
        var s = q.State;
        var json = new StringBuilder("{");
        json.Append("\"quant_type\": \"").Append(q.QuantType.ToBitsAndBytesName()).Append('"');
        json.Append(", \"blocksize\": ").Append(s.BlockSize.ToString(CultureInfo.InvariantCulture));
        json.Append(", \"dtype\": \"").Append(DTypeName(s.DType)).Append('"');
        json.Append(", \"shape\": [").Append(string.Join(", ", s.Shape.Select(d => d.ToString(CultureInfo.InvariantCulture)))).Append(']');
        if (s.Nested is { } nested)
        {
            json.Append(", \"nested_blocksize\": ").Append(nested.BlockSize.ToString(CultureInfo.InvariantCulture));
            json.Append(", \"nested_dtype\": \"float32\"");
            json.Append(", \"nested_offset\": ").Append(PythonFloatRepr(nested.Offset));
        }
        return json.Append('}').ToString();
    }

    internal static QuantizedTensor Read(SafetensorsFile file, string weightKey)
    {
        ArgumentNullException.ThrowIfNull(file);
        ArgumentException.ThrowIfNullOrEmpty(weightKey);
        string? prefix = Int8Prefix(weightKey);
        var names = file.Entries.Select(e => e.Name)
            .Where(k => k == weightKey || k.StartsWith(weightKey + ".", StringComparison.Ordinal) ||
                        (prefix is not null && (k == prefix + Int8ScaleName || k == prefix + Int8FormatName)))
            .ToList();
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (string name in names)
            {
                tensors[name] = file.ReadTensor(name);
            }
            return Read(tensors, weightKey, $"'{file.Path}'");
        }
        finally
        {
            foreach (var t in tensors.Values)
            {
                t.Dispose();
            }
        }
    }

    internal static QuantizedTensor Read(IReadOnlyDictionary<string, Tensor> tensors, string weightKey, string source)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentException.ThrowIfNullOrEmpty(weightKey);
        var owned = new List<Tensor>();
        try
        {
            var stateKeys = tensors.Keys.Where(k => k.StartsWith(weightKey + QuantStateSuffix, StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToArray();
            if (stateKeys.Length > 1)
            {
                // bnb's QuantState.from_dict insists on exactly one packed quant_state entry.
                throw Invalid(source, weightKey, $"there are {stateKeys.Length} quant_state entries ({string.Join(", ", stateKeys)})", "bitsandbytes allows exactly one; the file is inconsistent.");
            }
            if (stateKeys.Length == 1)
            {
                return DisposeUnused(Read4bit(tensors, weightKey, stateKeys[0], source, owned), owned);
            }
            if (Int8Prefix(weightKey) is { } prefix && tensors.ContainsKey(prefix + Int8ScaleName))
            {
                return DisposeUnused(ReadInt8(tensors, weightKey, prefix, source, owned), owned);
            }
            throw Invalid(source, weightKey, $"there is no '{weightKey}{QuantStateSuffix}nf4' (or __fp4) entry and no Int8 '{Int8ScaleName}' entry",
                "It is not a bitsandbytes-quantized weight; load it as a regular tensor.");
        }
        catch
        {
            foreach (var t in owned)
            {
                t.Dispose();
            }
            throw;
        }
    }

    // Intermediate handles (before a dtype/device conversion or a view) are released; the storage stays with the result.
    private static QuantizedTensor DisposeUnused(QuantizedTensor result, List<Tensor> owned)
    {
        var s = result.State;
        var kept = new HashSet<Tensor>(ReferenceEqualityComparer.Instance) { result.Data, s.Absmax };
        if (s.Code is not null)
        {
            kept.Add(s.Code);
        }
        if (s.Nested is not null)
        {
            kept.Add(s.Nested.Absmax);
            kept.Add(s.Nested.Code);
        }
        foreach (var t in owned.Where(t => !kept.Contains(t)))
        {
            t.Dispose();
        }
        return result;
    }

    private static QuantizedTensor Read4bit(IReadOnlyDictionary<string, Tensor> tensors, string weightKey, string stateKey, string source, List<Tensor> owned)
    {
        string typeName = stateKey[(weightKey.Length + QuantStateSuffix.Length)..];
        var type = typeName switch
        {
            "nf4" => QuantType.NF4,
            "fp4" => QuantType.FP4,
            _ => throw Invalid(source, stateKey, $"the quant type '{typeName}' is not nf4 or fp4", "Only bitsandbytes NF4 and FP4 4-bit weights are supported."),
        };
        using var json = ParseJson(tensors[stateKey], source, stateKey);
        var root = json.RootElement;
        string jsonType = GetString(root, "quant_type", source, stateKey);
        if (jsonType != typeName)
        {
            throw Invalid(source, stateKey, $"its quant_type '{jsonType}' contradicts the key suffix '{typeName}'", "The file is inconsistent; re-save it with bitsandbytes.");
        }
        int blockSize = GetInt(root, "blocksize", source, stateKey);
        CheckBlockSize(blockSize, source, stateKey);
        var dtype = ParseDType(GetString(root, "dtype", source, stateKey), source, stateKey);
        long[] shape = GetShape(root, source, stateKey);
        long n = shape.Aggregate(1L, (a, b) => a * b);
        long blocks = (n + blockSize - 1) / blockSize;

        var packed = Take(tensors, weightKey, source, owned);
        if (packed.dtype != ScalarType.Byte)
        {
            throw Invalid(source, weightKey, $"the packed weight is {packed.dtype}, not uint8", "Weights saved with a bnb quant_storage other than uint8 are not supported; re-save with the default quant_storage.");
        }
        if (packed.numel() != (n + 1) / 2)
        {
            throw Invalid(source, weightKey, $"it holds {packed.numel()} bytes but shape [{string.Join(", ", shape)}] needs {(n + 1) / 2}", "The weight and its quant_state do not belong together.");
        }
        var device = packed.device;
        var code = TakeFloat(tensors, weightKey + QuantMapSuffix, 16, source, owned, device);
        CheckCodebook(code, Codebooks.For(type), source, weightKey + QuantMapSuffix, typeName);

        NestedQuantState? nested = null;
        Tensor absmax;
        if (tensors.ContainsKey(weightKey + NestedAbsmaxSuffix))
        {
            int nestedBlockSize = GetInt(root, "nested_blocksize", source, stateKey);
            CheckBlockSize(nestedBlockSize, source, stateKey);
            if (GetString(root, "nested_dtype", source, stateKey) != "float32")
            {
                throw Invalid(source, stateKey, "nested_dtype is not float32", "bitsandbytes always double-quantizes float32 absmax values; the file is not from bitsandbytes.");
            }
            float offset = (float)GetDouble(root, "nested_offset", source, stateKey);
            absmax = Take(tensors, weightKey + AbsmaxSuffix, source, owned);
            if (absmax.dtype != ScalarType.Byte || absmax.numel() != blocks)
            {
                throw Invalid(source, weightKey + AbsmaxSuffix, $"with double quantization it must be uint8 [{blocks}] but is {absmax.dtype} [{string.Join(", ", absmax.shape)}]", "The file is inconsistent; re-save it with bitsandbytes.");
            }
            var nestedAbsmax = TakeFloat(tensors, weightKey + NestedAbsmaxSuffix, (blocks + nestedBlockSize - 1) / nestedBlockSize, source, owned, device);
            var nestedCode = TakeFloat(tensors, weightKey + NestedQuantMapSuffix, 256, source, owned, device);
            nested = new NestedQuantState(nestedAbsmax, nestedCode, nestedBlockSize, offset);
            absmax = Keep(absmax.to(device).reshape(-1).contiguous(), owned);
        }
        else
        {
            absmax = TakeFloat(tensors, weightKey + AbsmaxSuffix, blocks, source, owned, device);
        }
        var state = new QuantState(type, blockSize, shape, dtype, absmax, code, nested);
        return new QuantizedTensor(Keep(packed.view(-1, 1), owned), state);
    }

    private static QuantizedTensor ReadInt8(IReadOnlyDictionary<string, Tensor> tensors, string weightKey, string prefix, string source, List<Tensor> owned)
    {
        var codes = Take(tensors, weightKey, source, owned);
        if (codes.dtype != ScalarType.Int8 || codes.dim() == 0 || codes.numel() == 0)
        {
            throw Invalid(source, weightKey, $"an Int8 weight must be a non-empty int8 tensor but it is {codes.dtype} [{string.Join(", ", codes.shape)}]", "The file is inconsistent; re-save it with bitsandbytes.");
        }
        if (tensors.TryGetValue(prefix + Int8FormatName, out var format) && format.numel() == 1 && format.to_type(ScalarType.Int64).item<long>() != 0)
        {
            throw Invalid(source, prefix + Int8FormatName, "the weight is stored in a tiled GPU layout (weight_format ≠ 0)", "Only row-major Int8 weights are supported; re-save with bitsandbytes 0.45 or later.");
        }
        long columns = codes.shape[^1];
        long rows = codes.numel() / columns;
        var scale = TakeFloat(tensors, prefix + Int8ScaleName, rows, source, owned, codes.device);
        // The Int8 state dict does not record the original dtype; float32 is the lossless choice.
        var state = new QuantState(QuantType.Int8, checked((int)columns), codes.shape, ScalarType.Float32, scale, null, null);
        return new QuantizedTensor(codes, state);
    }

    // A new handle on the caller's tensor (same storage), owned by the result and outside any dispose scope.
    private static Tensor Take(IReadOnlyDictionary<string, Tensor> tensors, string key, string source, List<Tensor> owned)
    {
        if (!tensors.TryGetValue(key, out var t))
        {
            throw Invalid(source, key, "the entry is missing", "A bitsandbytes-quantized weight needs all of its quant-state entries; the file is incomplete.");
        }
        return Keep(t.detach(), owned);
    }

    private static Tensor TakeFloat(IReadOnlyDictionary<string, Tensor> tensors, string key, long expectedCount, string source, List<Tensor> owned, Device device)
    {
        var t = Take(tensors, key, source, owned);
        if (!t.is_floating_point() || t.numel() != expectedCount)
        {
            throw Invalid(source, key, $"expected {expectedCount} float values but found {t.dtype} [{string.Join(", ", t.shape)}]", "The weight and its quant-state entries do not belong together.");
        }
        return t.dtype == ScalarType.Float32 && t.device.ToString() == device.ToString() && t.dim() == 1
            ? t
            : Keep(t.to_type(ScalarType.Float32).to(device).reshape(-1).contiguous(), owned);
    }

    private static Tensor Keep(Tensor t, List<Tensor> owned)
    {
        t.DetachFromDisposeScope();
        if (!owned.Any(o => ReferenceEquals(o, t)))
        {
            owned.Add(t);
        }
        return t;
    }

    private static void CheckCodebook(Tensor stored, IReadOnlyList<float> expected, string source, string key, string typeName)
    {
        var values = stored.cpu().data<float>().ToArray();
        for (int i = 0; i < expected.Count; i++)
        {
            // bnb's QuantState.__eq__ compares codes with atol 1e-6; its 4-bit kernels dequantize by type, not by this table.
            if (!(Math.Abs(values[i] - expected[i]) <= 1e-6f))
            {
                throw Invalid(source, key, $"entry {i} is {values[i]} but bitsandbytes' {typeName} table has {expected[i]}", "Only the standard bitsandbytes NF4/FP4 tables are supported.");
            }
        }
    }

    private static void CheckBlockSize(int blockSize, string source, string key)
    {
        if (blockSize < 1 || blockSize > 4096 || (blockSize & (blockSize - 1)) != 0 || blockSize < 32)
        {
            throw Invalid(source, key, $"block size {blockSize} is not a power of two from 32 to 4096", "The file was not written by bitsandbytes or is damaged.");
        }
    }

    private static JsonDocument ParseJson(Tensor bytes, string source, string key)
    {
        if (bytes.dtype != ScalarType.Byte)
        {
            throw Invalid(source, key, $"the packed quant state is {bytes.dtype}, not uint8", "The file is damaged or not from bitsandbytes.");
        }
        try
        {
            var doc = JsonDocument.Parse(bytes.cpu().data<byte>().ToArray());
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
            {
                doc.Dispose();
                throw Invalid(source, key, "the packed quant state is not a JSON object", "The file is damaged or not from bitsandbytes.");
            }
            return doc;
        }
        catch (JsonException e)
        {
            throw Invalid(source, key, "the packed quant state is not valid UTF-8 JSON (" + e.Message + ")", "The file is damaged or not from bitsandbytes.", e);
        }
    }

    private static JsonElement Get(JsonElement root, string name, string source, string key) =>
        root.TryGetProperty(name, out var value) ? value : throw Invalid(source, key, $"the quant state has no '{name}'", "The file is damaged or not from bitsandbytes.");

    private static string GetString(JsonElement root, string name, string source, string key) =>
        Get(root, name, source, key) is { ValueKind: JsonValueKind.String } v ? v.GetString()! : throw Invalid(source, key, $"'{name}' is not a string", "The file is damaged or not from bitsandbytes.");

    private static int GetInt(JsonElement root, string name, string source, string key) =>
        Get(root, name, source, key) is { ValueKind: JsonValueKind.Number } v && v.TryGetInt32(out int i) ? i : throw Invalid(source, key, $"'{name}' is not an integer", "The file is damaged or not from bitsandbytes.");

    private static double GetDouble(JsonElement root, string name, string source, string key) =>
        Get(root, name, source, key) is { ValueKind: JsonValueKind.Number } v ? v.GetDouble() : throw Invalid(source, key, $"'{name}' is not a number", "The file is damaged or not from bitsandbytes.");

    private static long[] GetShape(JsonElement root, string source, string key)
    {
        var v = Get(root, "shape", source, key);
        if (v.ValueKind != JsonValueKind.Array || v.GetArrayLength() == 0 ||
            v.EnumerateArray().Any(d => d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long x) || x <= 0))
        {
            throw Invalid(source, key, "'shape' is not a non-empty list of positive integers", "The file is damaged or not from bitsandbytes.");
        }
        return v.EnumerateArray().Select(d => d.GetInt64()).ToArray();
    }

    private static ScalarType ParseDType(string name, string source, string key) => name switch
    {
        "float32" => ScalarType.Float32,
        "bfloat16" => ScalarType.BFloat16,
        "float16" => ScalarType.Float16,
        _ => throw Invalid(source, key, $"dtype '{name}' is not float32, bfloat16 or float16", "bitsandbytes quantizes only those dtypes; the file is damaged or not from bitsandbytes."),
    };

    // bnb writes str(dtype).strip("torch."); for these three dtypes that is just the name.
    private static string DTypeName(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => "float32",
        ScalarType.BFloat16 => "bfloat16",
        ScalarType.Float16 => "float16",
        _ => throw new ArgumentException($"{dtype} is not a dtype bitsandbytes records.", nameof(dtype)),
    };

    // bnb's Linear8bitLt saves SCB and weight_format on the module, beside "weight": "a.b.weight" → "a.b.".
    private static string? Int8Prefix(string weightKey) =>
        weightKey.EndsWith("weight", StringComparison.Ordinal) ? weightKey[..^"weight".Length] : null;

    private static InvalidDataException Invalid(string source, string key, string problem, string advice, Exception? inner = null) =>
        new($"Cannot read the quantized weight entry '{key}' from {source}: {problem}. {advice}", inner);

    /// <summary>
    /// Python's <c>repr(float)</c> (what <c>json.dumps</c> writes): the shortest round-tripping digits, fixed notation
    /// for decimal exponents −4 to 15 with at least one digit after the point, otherwise <c>1.5e-05</c> style.
    /// </summary>
    internal static string PythonFloatRepr(double value)
    {
        if (double.IsNaN(value))
        {
            return "NaN";
        }
        if (double.IsInfinity(value))
        {
            return value > 0 ? "Infinity" : "-Infinity";
        }
        string sign = value < 0 || (value == 0 && double.IsNegative(value)) ? "-" : "";
        if (value == 0)
        {
            return sign + "0.0";
        }
        // .NET Core 3.0+ "R" is the shortest round-trip string, the same digits Python's repr chooses.
        string r = Math.Abs(value).ToString("R", CultureInfo.InvariantCulture);
        int e = r.IndexOfAny(['E', 'e']);
        int exponent = e < 0 ? 0 : int.Parse(r[(e + 1)..], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
        string mantissa = e < 0 ? r : r[..e];
        int point = mantissa.IndexOf('.');
        string digits = point < 0 ? mantissa : mantissa.Remove(point, 1);
        int decimalPoint = (point < 0 ? mantissa.Length : point) + exponent;
        int leadingZeros = digits.Length - digits.TrimStart('0').Length;
        digits = digits.TrimStart('0').TrimEnd('0');
        decimalPoint -= leadingZeros;
        int sciExponent = decimalPoint - 1;
        if (sciExponent is >= -4 and < 16)
        {
            if (decimalPoint <= 0)
            {
                return sign + "0." + new string('0', -decimalPoint) + digits;
            }
            if (decimalPoint >= digits.Length)
            {
                return sign + digits + new string('0', decimalPoint - digits.Length) + ".0";
            }
            return sign + digits[..decimalPoint] + "." + digits[decimalPoint..];
        }
        string fraction = digits.Length > 1 ? "." + digits[1..] : "";
        return sign + digits[0] + fraction + "e" + (sciExponent < 0 ? "-" : "+") + Math.Abs(sciExponent).ToString("00", CultureInfo.InvariantCulture);
    }
}
