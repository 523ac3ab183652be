using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Models;

/// <summary>
/// Keys and values of every attention layer for the positions already processed, so that generation feeds only new
/// tokens. Buffers are [B, H_kv, capacity, head_dim]; they are preallocated to <see cref="Capacity"/> when a maximum
/// length is given and otherwise grow by doubling.
/// </summary>
/// <remarks>
/// The cache owns its buffers (they live outside any dispose scope); dispose it when the sequence is finished.
/// Positions continue from <see cref="Length"/>: a forward pass with a cache treats its input as positions
/// Length … Length+T−1, and its attention mask, if any, must cover all Length+T positions.
/// It is for inference: keys and values are copied into the buffers without autograd, so no gradient flows through
/// cached positions.
/// </remarks>
public sealed class KvCache : IDisposable
{
    private readonly Tensor?[] _keys;
    private readonly Tensor?[] _values;
    private readonly long[] _lengths;
    private readonly long _maxLength;

    /// <param name="numLayers">Number of attention layers of the model.</param>
    /// <param name="maxLength">Preallocate for this many positions; 0 = grow as needed.</param>
    public KvCache(int numLayers, long maxLength = 0)
    {
        if (numLayers <= 0) throw new ArgumentOutOfRangeException(nameof(numLayers), numLayers, "A cache needs at least one layer.");
        if (maxLength < 0) throw new ArgumentOutOfRangeException(nameof(maxLength), maxLength, "Use 0 for a growing cache.");
        _keys = new Tensor?[numLayers];
        _values = new Tensor?[numLayers];
        _lengths = new long[numLayers];
        _maxLength = maxLength;
    }

    public int NumLayers => _keys.Length;

    /// <summary>Positions cached so far (of the first layer; all layers agree between forward passes).</summary>
    public long Length => _lengths[0];

    /// <summary>Positions the current buffers can hold without reallocating (0 before the first forward).</summary>
    public long Capacity => _keys[0]?.shape[2] ?? 0;

    /// <summary>
    /// Appends this step's keys and values ([B, H_kv, T, d]) for <paramref name="layer"/> and returns views of all
    /// cached keys and values, [B, H_kv, Length+T, d], valid until the next append.
    /// </summary>
    public (Tensor Keys, Tensor Values) Append(int layer, Tensor keys, Tensor values)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var start = _lengths[layer];
        var end = start + keys.shape[2];
        if (_maxLength > 0 && end > _maxLength)
            throw new InvalidOperationException($"The KV cache was created for {_maxLength} positions; this step needs {end}.");
        EnsureCapacity(ref _keys[layer], keys, end);
        EnsureCapacity(ref _values[layer], values, end);
        using (torch.no_grad()) {
            _keys[layer]!.narrow(2, start, end - start).copy_(keys);
            _values[layer]!.narrow(2, start, end - start).copy_(values);
        }
        _lengths[layer] = end;
        return (_keys[layer]!.narrow(2, 0, end), _values[layer]!.narrow(2, 0, end));
    }

    /// <summary>Forgets all positions but keeps the buffers for reuse.</summary>
    public void Reset() => Array.Clear(_lengths);

    private void EnsureCapacity(ref Tensor? buffer, Tensor step, long needed)
    {
        if (buffer is not null && buffer.shape[2] >= needed) return;
        var capacity = _maxLength > 0 ? _maxLength : Math.Max(needed, 2 * (buffer?.shape[2] ?? 0));
        var grown = torch.zeros(new[] { step.shape[0], step.shape[1], capacity, step.shape[3] }, dtype: step.dtype, device: step.device)
            .DetachFromDisposeScope();
        if (buffer is not null) {
            var kept = buffer.shape[2];
            using (torch.no_grad()) grown.narrow(2, 0, kept).copy_(buffer);
            buffer.Dispose();
        }
        buffer = grown;
    }

    private bool _disposed;

    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var t in _keys) t?.Dispose();
        foreach (var t in _values) t?.Dispose();
    }
}
