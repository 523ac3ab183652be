using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace LoraPS.Models;

/// <summary>
/// Base of every LoraPS model: a TorchSharp module whose <c>named_modules()</c> and <c>state_dict()</c> names are
/// exactly Hugging Face's (<c>model.layers.0.self_attn.q_proj</c>, <c>lm_head</c>, <c>classifier</c>, …), so adapter
/// files and checkpoints map one to one.
/// </summary>
/// <remarks>
/// Every Linear projection is held as a <c>Module&lt;Tensor, Tensor&gt;</c> field, so <see cref="ReplaceModule"/>
/// can swap it for a wrapper (LoRA, quantised) that forward() then calls.
/// </remarks>
public abstract class TransformerModel : nn.Module<Tensor, Tensor>
{
    private protected TransformerModel(string name, ModelBuild build) : base(name)
    {
        Config = build.Config;
        Build = build;
    }

    public ModelConfig Config { get; }

    private protected ModelBuild Build { get; }

    public abstract ModelHeadKind HeadKind { get; }

    /// <summary>Element type of the weights and activations (norms, softmax and RoPE still run in fp32).</summary>
    public ScalarType DType => FirstParameter.dtype;

    /// <summary>Where the weights are; inputs are moved here.</summary>
    public Device Device => FirstParameter.device;

    private Parameter FirstParameter => parameters().FirstOrDefault()
        ?? throw new InvalidOperationException($"{GetType().Name} has no parameters (it was disposed?).");

    /// <summary>Attention kernel used by every layer; can be switched at any time.</summary>
    public AttentionImplementation AttentionImplementation {
        get => Build.Attention.Implementation;
        set => Build.Attention.Implementation = value;
    }

    /// <summary>
    /// Activation (gradient) checkpointing, transformers' <c>gradient_checkpointing_enable()</c>: while training with
    /// autograd on and no KV cache, each decoder/encoder layer keeps only its input during the forward and is recomputed
    /// in the backward. The gradients are the same; the memory held from forward to backward shrinks from every layer's
    /// activations to one hidden-state tensor per layer, for about a third more compute. Eval and generation are unaffected.
    /// </summary>
    /// <exception cref="NotSupportedException">Setting it to true on a model whose layers cannot be checkpointed.</exception>
    public bool GradientCheckpointing {
        get => Build.Checkpointing.Enabled;
        set {
            if (value && !Build.Checkpointing.Supported)
                throw new NotSupportedException($"{GetType().Name} does not support gradient checkpointing; train it without.");
            Build.Checkpointing.Enabled = value;
        }
    }

    /// <summary>
    /// Runs one layer: <c>block(x, constants)</c>, checkpointed (<see cref="ActivationCheckpoint"/>) when
    /// <see cref="GradientCheckpointing"/> is on, the model is training, autograd is on and there is no KV cache.
    /// </summary>
    private protected Tensor RunLayer(CheckpointedBlock block, Tensor x, KvCache? cache, params Tensor?[] constants) =>
        GradientCheckpointing && training && cache is null && is_grad_enabled()
            ? ActivationCheckpoint.Run(block, x, constants)
            : block(x, constants);

    /// <summary>
    /// Paths of the modules whose checkpoint weight is stored (in, out) — GPT-2's Conv1D layers. LoraPS holds them as
    /// ordinary (out, in) Linear layers; writers must transpose them back (PEFT's <c>fan_in_fan_out</c>).
    /// </summary>
    public virtual IReadOnlySet<string> FanInFanOutModules => EmptySet;

    private static readonly IReadOnlySet<string> EmptySet = new HashSet<string>();

    /// <summary>
    /// Runs the model. Tensors in the result belong to the caller's dispose scope.
    /// </summary>
    /// <param name="inputIds">[B, T] int64 token ids.</param>
    /// <param name="attentionMask">[B, S] with 1 = token, 0 = padding (S = cached + T). Null = all tokens.</param>
    /// <param name="cache">Decoders only: continue from the cached positions and append this step's keys/values.</param>
    /// <param name="positionIds">[B, T] positions; default: cached length + 0..T−1 (RoBERTa: derived from padding).</param>
    /// <param name="tokenTypeIds">BERT/RoBERTa segment ids [B, T]; default zeros.</param>
    /// <param name="outputHiddenStates">Also return HF's <c>hidden_states</c> tuple.</param>
    public ModelOutput Forward(Tensor inputIds, Tensor? attentionMask = null, KvCache? cache = null,
        Tensor? positionIds = null, Tensor? tokenTypeIds = null, bool outputHiddenStates = false)
    {
        if (inputIds.dim() != 2) throw new ArgumentException($"input_ids must be [batch, sequence], got [{string.Join(", ", inputIds.shape)}].", nameof(inputIds));
        if (cache is not null && !Config.IsDecoder) throw new ArgumentException($"{Config.ModelType} is an encoder; it has no KV cache.", nameof(cache));
        if (cache is not null && cache.NumLayers != Config.NumHiddenLayers)
            throw new ArgumentException($"The cache has {cache.NumLayers} layers, the model {Config.NumHiddenLayers}.", nameof(cache));
        using var scope = NewDisposeScope();
        var args = new ForwardArgs(inputIds.to(Device), attentionMask?.to(Device), cache, positionIds?.to(Device), tokenTypeIds?.to(Device), outputHiddenStates);
        return ForwardCore(args).MoveToOuterDisposeScope();
    }

    private protected abstract ModelOutput ForwardCore(ForwardArgs args);

    /// <summary>Lets a head run its body (a different TransformerModel) inside the head's own scope.</summary>
    internal ModelOutput ForwardBody(ForwardArgs args) => ForwardCore(args);

    /// <summary>Module-style call: logits (or the last hidden state of a base model) for <paramref name="inputIds"/>.</summary>
    public override Tensor forward(Tensor inputIds)
    {
        var output = Forward(inputIds);
        var result = output.Logits ?? output.LastHiddenState;
        output.DisposeAllBut(result);
        return result;
    }

    /// <summary>
    /// The loss transformers computes for this head: mean next-token cross-entropy over shifted labels (−100 ignored)
    /// for causal LMs; cross-entropy, BCE or MSE by <c>problem_type</c> for sequence classification.
    /// </summary>
    public Tensor ComputeLoss(ModelOutput output, Tensor labels)
    {
        var logits = output.Logits ?? throw new InvalidOperationException("A base model has no logits to compute a loss from.");
        return HeadKind switch {
            ModelHeadKind.CausalLM => Losses.CausalLm(logits, labels),
            ModelHeadKind.SequenceClassification => Losses.SequenceClassification(logits, labels, Config),
            _ => throw new InvalidOperationException("A base model has no loss."),
        };
    }

    /// <summary>A cache sized for this model (decoders only).</summary>
    /// <param name="maxLength">Preallocate for this many positions; 0 = grow as needed.</param>
    public KvCache CreateKvCache(long maxLength = 0)
    {
        if (!Config.IsDecoder) throw new InvalidOperationException($"{Config.ModelType} is an encoder; it has no KV cache.");
        return new KvCache(Config.NumHiddenLayers, maxLength);
    }

    /// <summary>The submodule at a Hugging Face path such as <c>model.layers.0.self_attn.q_proj</c>.</summary>
    public nn.Module GetModule(string path) => ModuleTree.Get(this, path);

    /// <summary>
    /// Replaces the submodule at <paramref name="path"/> by <c>replacement(old)</c>, e.g.
    /// <c>model.ReplaceModule("model.layers.0.self_attn.q_proj", old =&gt; new LoraLinear((Linear)old))</c>.
    /// Both forward() and named_modules()/parameters() see the new module.
    /// </summary>
    public nn.Module ReplaceModule(string path, Func<nn.Module, nn.Module> replacement) => ModuleTree.Replace(this, path, replacement);

    /// <summary>Every Linear layer with its HF path and sizes (LoRA target candidates).</summary>
    public IReadOnlyList<LinearLayerInfo> LinearLayers() => ModuleTree.Linears(this, FanInFanOutModules);

    /// <summary>Number of distinct parameter elements (tied weights counted once).</summary>
    public long ParameterCount() => parameters().Sum(p => p.numel());

    /// <summary>Bytes held by distinct parameters.</summary>
    public long ParameterBytes() => parameters().Sum(p => p.numel() * p.ElementSize);

    /// <summary>
    /// Re-points tied output weights at the input embedding (after the embedding's Parameter was replaced, e.g. by
    /// loading). The head's previous weight is not disposed; whoever replaced the embedding owns the old one.
    /// </summary>
    public virtual void TieWeights() { }

    /// <summary>The paths of parameters that are tied to another one, as (tied, source).</summary>
    public virtual IReadOnlyList<(string Tied, string Source)> TiedParameters => Array.Empty<(string, string)>();
}

/// <summary>Shared, mutable attention settings: one instance per model, read by every attention layer.</summary>
internal sealed class AttentionSettings
{
    public AttentionImplementation Implementation { get; set; } = AttentionImplementation.Sdpa;
}

/// <summary>What every submodule constructor needs: the config, where to allocate, and the shared settings.</summary>
internal sealed record ModelBuild(ModelConfig Config, Device Device, ScalarType DType, AttentionSettings Attention)
{
    public CheckpointSettings Checkpointing { get; } = new();

    public Linear Linear(long inFeatures, long outFeatures, bool bias) =>
        nn.Linear(inFeatures, outFeatures, hasBias: bias, device: Device, dtype: DType);

    public LayerNorm LayerNorm(long size) =>
        nn.LayerNorm(size, Config.NormEpsilon, elementwise_affine: true, bias: true, device: Device, dtype: DType);

    public EmbeddingTable Embedding(long count, long dim) => new(count, dim, Device, DType);

    public RmsNorm RmsNorm(long size) => new(size, Config.NormEpsilon, Device, DType);
}
