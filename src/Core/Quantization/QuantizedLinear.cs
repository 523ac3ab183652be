using LoraPS.Models;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LoraPS.Quantization;

/// <summary>
/// A frozen linear layer whose weight is stored quantized (bitsandbytes' <c>Linear4bit</c> / <c>Linear8bitLt</c> as
/// QLoRA uses them): <c>y = x · dequant(W)ᵀ + b</c>, computed in <see cref="ComputeDType"/>.
/// </summary>
/// <remarks>
/// <para>
/// W never gets a gradient, and no full-precision copy of it outlives a call: the forward dequantizes into a
/// <see cref="DequantizationWorkspace"/> buffer shared by every quantized layer of the model, multiplies, and keeps
/// nothing; the backward dequantizes again and returns <c>grad_x = grad_y · W</c> only (bnb's <c>MatMul4Bit</c> does the
/// same). Saving the dequantized weight for the backward, as a plain <c>linear</c> would, keeps every layer's
/// full-precision copy alive from forward to backward — the whole model in full precision at peak.
/// </para>
/// <para>The bias, if any, stays a frozen full-precision parameter (<c>bias</c> in the state dict).</para>
/// </remarks>
public sealed class QuantizedLinear : nn.Module<Tensor, Tensor>
{
    readonly DequantizationWorkspace _workspace;
    [TorchSharp.Utils.ComponentName(Name = "bias")]
    readonly Parameter? _bias;
    bool _disposed;

    /// <summary>Wraps <paramref name="weight"/> (shape (out, in)), which the layer then owns.</summary>
    /// <param name="weight">The quantized (out, in) weight.</param>
    /// <param name="bias">An (out) bias, copied into a frozen parameter in <paramref name="computeDType"/>; null for none.</param>
    /// <param name="computeDType">The dtype of the dequantized weight and of the matmul (float32, bfloat16 or float16).</param>
    /// <param name="workspace">A buffer shared with the model's other quantized layers; null gives this layer its own.</param>
    public QuantizedLinear(QuantizedTensor weight, Tensor? bias, ScalarType computeDType, DequantizationWorkspace? workspace = null)
        : base(nameof(QuantizedLinear))
    {
        ArgumentNullException.ThrowIfNull(weight);
        if (weight.Shape.Count != 2)
            throw new ArgumentException($"A linear weight is (out, in); this quantized tensor has shape [{string.Join(", ", weight.Shape)}].", nameof(weight));
        QuantizedTensor.CheckFloating(computeDType, nameof(computeDType), "Cannot compute in " + computeDType);
        Weight = weight;
        ComputeDType = computeDType;
        if (bias is not null)
        {
            if (!bias.shape.SequenceEqual([OutFeatures]))
                throw new ArgumentException($"The bias must be [{OutFeatures}], got [{string.Join(", ", bias.shape)}].", nameof(bias));
            using var noGrad = no_grad();
            _bias = new Parameter(bias.detach().to(computeDType, weight.Device, copy: true), requires_grad: false);
        }
        _workspace = workspace ?? new DequantizationWorkspace();
        _workspace.AddUser();
        RegisterComponents();
    }

    /// <summary>The stored weight: codes plus quantization state.</summary>
    public QuantizedTensor Weight { get; }

    /// <summary>Frozen bias in <see cref="ComputeDType"/>, or null.</summary>
    public Parameter? bias => _bias;

    public long InFeatures => Weight.Shape[1];
    public long OutFeatures => Weight.Shape[0];
    public ScalarType ComputeDType { get; }
    public QuantType QuantType => Weight.QuantType;
    public bool IsDoubleQuantized => Weight.IsDoubleQuantized;
    public Device Device => Weight.Device;

    /// <summary>A new (out, in) tensor of the dequantized weight in <paramref name="dtype"/> (default <see cref="ComputeDType"/>).</summary>
    public Tensor DequantizedWeight(ScalarType? dtype = null) => Weight.Dequantize(dtype ?? ComputeDType);

    /// <summary>y = x·dequant(W)ᵀ + b in <see cref="ComputeDType"/>, cast back to x's dtype (bnb's <c>Linear4bit.forward</c>).</summary>
    public override Tensor forward(Tensor x)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var scope = NewDisposeScope();
        var inputDType = x.dtype;
        var input = x.to(ComputeDType);
        // Only an input that needs a gradient needs the autograd node; without one (inference, and the no-grad forward of
        // a checkpointed layer) TorchSharp's custom-function bookkeeping would only cost time and keep handles alive.
        var y = is_grad_enabled() && input.requires_grad ? QuantizedMatmul.apply(input, this) : MultiplyTransposed(input);
        if (bias is not null) y = y + bias;
        return y.to(inputDType).MoveToOuterDisposeScope();
    }

    /// <summary>x·Wᵀ with W dequantized into the shared buffer (no autograd; the caller holds a scope).</summary>
    internal Tensor MultiplyTransposed(Tensor x)
    {
        lock (_workspace)
        {
            var w = _workspace.Rent(Weight.Shape, ComputeDType, Weight.Device);
            Weight.DequantizeInto(w);
            return nn.functional.linear(x, w);
        }
    }

    /// <summary>grad_y·W: the input gradient of <see cref="MultiplyTransposed"/>.</summary>
    internal Tensor MultiplyGradient(Tensor gradOutput)
    {
        lock (_workspace)
        {
            var w = _workspace.Rent(Weight.Shape, ComputeDType, Weight.Device);
            Weight.DequantizeInto(w);
            return gradOutput.to(ComputeDType).matmul(w);
        }
    }

    public override string ToString() =>
        $"QuantizedLinear(in_features={InFeatures}, out_features={OutFeatures}, bias={bias is not null}, {QuantizationOptions.NameOf(QuantType, IsDoubleQuantized)}, compute={ComputeDType})";

    protected override void Dispose(bool disposing)
    {
        if (disposing && !_disposed)
        {
            _disposed = true;
            Weight.Dispose();
            _workspace.RemoveUser();
        }
        base.Dispose(disposing);
    }
}

/// <summary>
/// The autograd node of <see cref="QuantizedLinear"/>: forward x·dequant(W)ᵀ, backward grad_y·dequant(W) for x only.
/// Nothing is saved for the backward but the layer itself, so W is dequantized a second time there.
/// </summary>
internal sealed class QuantizedMatmul : autograd.SingleTensorFunction<QuantizedMatmul>
{
    public override string Name => nameof(QuantizedMatmul);

    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var x = (Tensor)vars[0];
        var layer = (QuantizedLinear)vars[1];
        ctx.save_data("layer", layer);
        return layer.MultiplyTransposed(x);
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
    {
        var layer = (QuantizedLinear)ctx.get_data("layer");
        Tensor grad;
        using (no_grad())
        using (var scope = NewDisposeScope())
        {
            grad = layer.MultiplyGradient(grad_output).DetachFromDisposeScope();
        }
        // TorchSharp wraps the incoming gradient in a new handle that lands in the caller's dispose scope (the training
        // step) and keeps the handle it is given back; libtorch holds its own references to both. Left alone, the two
        // handles of every quantized layer would keep its gradients alive until the step ends (~100 MB at peak on a
        // 170M model) instead of until autograd is done with them. So free the incoming handle now, and the returned one
        // at the next call, once libtorch has copied it.
        grad_output.Dispose();
        ReturnedGradient.Hold(grad);
        return [grad, null!];
    }
}

/// <summary>
/// One scratch buffer that quantized layers dequantize their weights into, one layer at a time: it grows to the largest
/// weight (per dtype) and is reused on every call, so dequantization costs no allocation and no page faults after the
/// first step, and holds at most one layer's weight in full precision. Shared by the quantized layers of a model;
/// freed when the last of them is disposed.
/// </summary>
public sealed class DequantizationWorkspace
{
    readonly Dictionary<ScalarType, Tensor> _buffers = [];
    int _users;

    /// <summary>Bytes currently held by the buffers.</summary>
    public long Bytes
    {
        get { lock (this) return _buffers.Values.Sum(b => b.numel() * b.ElementSize); }
    }

    /// <summary>A contiguous view of <paramref name="shape"/> into the buffer of <paramref name="dtype"/>, valid until the next call.</summary>
    internal Tensor Rent(IReadOnlyList<long> shape, ScalarType dtype, Device device)
    {
        long n = shape.Aggregate(1L, (a, b) => a * b);
        if (!_buffers.TryGetValue(dtype, out var buffer) || buffer.numel() < n || buffer.device.ToString() != device.ToString())
        {
            buffer?.Dispose();
            buffer = empty(n, dtype, device).DetachFromDisposeScope();
            _buffers[dtype] = buffer;
        }
        return buffer.narrow(0, 0, n).view(shape.ToArray());
    }

    internal void AddUser()
    {
        lock (this) _users++;
    }

    internal void RemoveUser()
    {
        lock (this)
        {
            if (--_users > 0) return;
            foreach (var b in _buffers.Values) b.Dispose();
            _buffers.Clear();
        }
    }
}
