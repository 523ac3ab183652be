using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Tests.Quantization;

/// <summary>
/// A deliberately naive, scalar float32 transcription of bitsandbytes' reference backend
/// (<c>backends/default/ops.py</c>: <c>quantize_4bit</c>, <c>quantize_blockwise</c>, <c>_dequantize_4bit_impl</c>) and of
/// <c>int8_vectorwise_quant</c>, sharing no code with LoraPS, so the vectorised kernels are checked element by element.
/// </summary>
internal static class BnbReference
{
    /// <summary>Per block: absmax = max|x|, s = clamp(x · (1/absmax), −1, 1), code = argmin |s − table[j]| (first index; NaN → 0).</summary>
    public static (byte[] Codes, float[] Absmax) QuantizeBlockwise(float[] x, int blockSize, IReadOnlyList<float> table)
    {
        int blocks = (x.Length + blockSize - 1) / blockSize;
        var absmax = new float[blocks];
        var codes = new byte[x.Length];
        for (int b = 0; b < blocks; b++)
        {
            int start = b * blockSize, end = Math.Min(x.Length, start + blockSize);
            float max = 0;
            for (int i = start; i < end; i++)
            {
                max = Math.Max(max, Math.Abs(x[i]));
            }
            absmax[b] = max;
            float inverse = 1f / max;
            for (int i = start; i < end; i++)
            {
                codes[i] = Argmin(Math.Clamp(x[i] * inverse, -1f, 1f), table);
            }
        }
        return (codes, absmax);
    }

    /// <summary>torch.argmin over |s − table[j]|: NaN counts as the minimum, ties go to the first index.</summary>
    public static byte Argmin(float s, IReadOnlyList<float> table)
    {
        if (float.IsNaN(s))
        {
            return 0;
        }
        int best = 0;
        float bestDistance = Math.Abs(s - table[0]);
        for (int j = 1; j < table.Count; j++)
        {
            float d = Math.Abs(s - table[j]);
            if (d < bestDistance)
            {
                best = j;
                bestDistance = d;
            }
        }
        return (byte)best;
    }

    /// <summary>byte k = code[2k] &lt;&lt; 4 | code[2k+1]; an odd count is padded with the code of a scaled 0.0.</summary>
    public static byte[] Pack(byte[] codes, IReadOnlyList<float> table)
    {
        var padded = codes.Length % 2 == 0 ? codes : [.. codes, Argmin(0f, table)];
        var packed = new byte[padded.Length / 2];
        for (int k = 0; k < packed.Length; k++)
        {
            packed[k] = (byte)(padded[2 * k] << 4 | padded[2 * k + 1]);
        }
        return packed;
    }

    public static float[] Dequantize(byte[] codes, float[] absmax, int blockSize, IReadOnlyList<float> table)
    {
        var result = new float[codes.Length];
        for (int i = 0; i < codes.Length; i++)
        {
            result[i] = table[codes[i]] * absmax[i / blockSize];
        }
        return result;
    }

    /// <summary>int8_vectorwise_quant: s = max|row|; q = round_half_even(x · (reciprocal(s) · 127)).</summary>
    public static (sbyte[] Codes, float[] RowAbsmax) QuantizeRows(float[] x, int columns)
    {
        int rows = x.Length / columns;
        var codes = new sbyte[x.Length];
        var stats = new float[rows];
        for (int r = 0; r < rows; r++)
        {
            float max = 0;
            for (int c = 0; c < columns; c++)
            {
                max = Math.Max(max, Math.Abs(x[r * columns + c]));
            }
            stats[r] = max;
            float scale = max == 0 ? 0 : (1f / max) * 127f;
            for (int c = 0; c < columns; c++)
            {
                codes[r * columns + c] = (sbyte)MathF.Round(x[r * columns + c] * scale, MidpointRounding.ToEven);
            }
        }
        return (codes, stats);
    }

    public static float[] Floats(Tensor t) => t.to_type(ScalarType.Float32).cpu().contiguous().data<float>().ToArray();

    public static byte[] Bytes(Tensor t) => t.cpu().contiguous().data<byte>().ToArray();

    public static int[] Bits(IEnumerable<float> values) => values.Select(BitConverter.SingleToInt32Bits).ToArray();

    /// <summary>N(0,1) data with the awkward cases mixed in: exact zeros, a whole zero block, exact table multiples and midpoints.</summary>
    public static Tensor AwkwardWeights(long[] shape, int seed, IReadOnlyList<float> table, int blockSize = 64)
    {
        using var scope = NewDisposeScope();
        using var generator = new Generator((ulong)seed);
        var w = randn(shape, generator: generator).clamp_(-1.9, 1.9).view(-1);
        long n = w.shape[0];
        var values = w.data<float>().ToArray();
        var rng = new Random(seed);
        for (int i = 0; i < n; i += 7)
        {
            values[i] = 0f;
        }
        if (n >= 2 * blockSize)
        {
            Array.Clear(values, blockSize, blockSize);
        }
        // Put each block's max at a known value so exact table points and midpoints are exact after scaling.
        for (long b = 0; b * blockSize < n; b++)
        {
            long start = b * blockSize;
            if (start == blockSize && n >= 2 * blockSize)
            {
                continue;
            }
            values[start] = 2f;
            for (long i = start + 1; i < Math.Min(n, start + blockSize); i += 3)
            {
                int j = rng.Next(table.Count - 1);
                values[i] = rng.Next(2) == 0 ? 2f * table[j] : (table[j] + table[j + 1]);
            }
        }
        return tensor(values).view(shape).MoveToOuterDisposeScope();
    }
}
