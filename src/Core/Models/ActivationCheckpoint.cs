using LoraPS.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Models;

/// <summary>
/// A decoder/encoder block run with activation (gradient) checkpointing: <c>block(x, constants)</c> with the same
/// constants every call (rotary cos/sin, attention mask — tensors that need no gradient, or null).
/// </summary>
internal delegate Tensor CheckpointedBlock(Tensor x, IReadOnlyList<Tensor?> constants);

/// <summary>The model's checkpointing switch, shared by a head model and its body (one per <see cref="ModelBuild"/>).</summary>
internal sealed class CheckpointSettings
{
    /// <summary>Set by the body models whose layer loop goes through <see cref="ActivationCheckpoint.Run"/>.</summary>
    public bool Supported { get; set; }

    public bool Enabled { get; set; }
}

/// <summary>
/// Per-block activation checkpointing, torch's <c>torch.utils.checkpoint(use_reentrant=True)</c> as transformers'
/// <c>gradient_checkpointing_enable()</c> applies it to each decoder layer: the forward keeps only the block's input;
/// the backward runs the block again with autograd on and back-propagates through that recomputation.
/// </summary>
/// <remarks>
/// Every block's intermediate activations (attention projections, scores, MLP hidden states, LoRA's x·Aᵀ) are then freed
/// as soon as the block returns instead of living until the backward — the saved tensors that dominate training memory
/// once the base weights are 4-bit. The price is one more forward per block in the backward (about a third more compute).
/// </remarks>
internal static class ActivationCheckpoint
{
    /// <summary>
    /// <paramref name="block"/>(<paramref name="x"/>, <paramref name="constants"/>), checkpointed. If x needs no gradient
    /// (the first block's input when the embedding is frozen), a leaf copy that does is used instead, as transformers'
    /// <c>enable_input_require_grads</c> does: autograd records the checkpoint only when one of its inputs needs a
    /// gradient, and without it no parameter inside the block would get one.
    /// </summary>
    public static Tensor Run(CheckpointedBlock block, Tensor x, params Tensor?[] constants)
    {
        if (!x.requires_grad) x = x.detach().requires_grad_(true);
        return CheckpointFunction.apply(x, new CheckpointCall(block, constants));
    }

    /// <summary>Inputs of at least this many bytes (a 512-token sequence at hidden 1024 in bf16) make a heap trim worth its cost.</summary>
    const long TrimInputBytes = 1 << 20;

    /// <summary>
    /// Gives the C heap's freed pages back after a block has run (see <see cref="NativeHeap.Trim"/>), when the block's
    /// activations are large. A block's temporaries are freed when it returns, but glibc keeps them in its heap, where
    /// the saved inputs of the next blocks pin them between live chunks: measured on a 3.4B Llama at 512 tokens, the heap
    /// grew 560 MB during a checkpointed forward that held 186 MB of live tensors, and the training step peaked 1.4 GB
    /// above the loaded model instead of 0.5 GB. Small models skip it: the trim costs more than their blocks.
    /// </summary>
    internal static void ReleaseFreedHeap(Tensor activation)
    {
        if (activation.NumberOfElements * activation.ElementSize >= TrimInputBytes) NativeHeap.Trim();
    }

    /// <summary>The block and its constants, passed as one non-tensor argument so autograd never differentiates the constants.</summary>
    internal sealed record CheckpointCall(CheckpointedBlock Block, IReadOnlyList<Tensor?> Constants);
}

/// <summary>The autograd node of <see cref="ActivationCheckpoint.Run"/>.</summary>
internal sealed class CheckpointFunction : autograd.SingleTensorFunction<CheckpointFunction>
{
    public override string Name => nameof(CheckpointFunction);

    /// <summary>Runs the block without autograd (TorchSharp's apply disables it here) and saves the input, the constants and the RNG state.</summary>
    public override Tensor forward(autograd.AutogradContext ctx, params object[] vars)
    {
        var x = (Tensor)vars[0];
        var call = (ActivationCheckpoint.CheckpointCall)vars[1];
        // Saved variables are held by libtorch for the node's lifetime, so the constants outlive the caller's dispose scope.
        // The generator state is torch's preserve_rng_state: the recomputation must draw the same dropout masks.
        ctx.save_for_backward([x, random.get_rng_state(), .. call.Constants]);
        ctx.save_data("block", call.Block);
        var y = call.Block(x, call.Constants);
        ActivationCheckpoint.ReleaseFreedHeap(x);
        return y;
    }

    public override List<Tensor> backward(autograd.AutogradContext ctx, Tensor grad_output)
    {
        var block = (CheckpointedBlock)ctx.get_data("block");
        Tensor grad;
        using (var scope = NewDisposeScope())
        {
            var saved = ctx.get_saved_variables();
            var input = saved[0].detach().requires_grad_(true);
            var constants = saved.Skip(2).Select(t => t is null || t.IsInvalid ? null : t).ToList();
            var stateAfterForward = random.get_rng_state();
            random.set_rng_state(saved[1]);
            try
            {
                using var grad_mode = enable_grad();
                var output = block(input, constants);
                // A reentrant backward: the block's parameters (the LoRA factors) accumulate their .grad here.
                autograd.backward([output], [grad_output]);
            }
            finally
            {
                random.set_rng_state(stateAfterForward);
            }
            grad = (input.grad ?? zeros_like(input)).DetachFromDisposeScope();
        }
        ActivationCheckpoint.ReleaseFreedHeap(grad);
        // The handle ownership QuantizedMatmul.backward explains: free the incoming handle now and the returned one at
        // the next call, once libtorch has taken its own reference.
        grad_output.Dispose();
        ReturnedGradient.Hold(grad);
        return [grad, null!];
    }
}

/// <summary>
/// Keeps the gradient handle a custom backward returns alive until libtorch has copied it (it reads the handle after the
/// backward returns), and frees it at the next call instead of leaving it to the caller's dispose scope.
/// </summary>
internal static class ReturnedGradient
{
    static readonly object s_lock = new();
    static Tensor? s_returned;

    public static void Hold(Tensor grad)
    {
        lock (s_lock)
        {
            s_returned?.Dispose();
            s_returned = grad;
        }
    }
}
