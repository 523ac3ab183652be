using TorchSharp;
using static TorchSharp.torch;

namespace LoraPS.Models;

/// <summary>Builds the module tree for a config and head, with uninitialised (meta) or randomly initialised weights.</summary>
public static class ModelFactory
{
    /// <summary>
    /// Creates the model for <paramref name="config"/>. On the <c>meta</c> device nothing is allocated: use that to
    /// inspect names and shapes, or let <see cref="ModelLoader"/> fill the weights. On a real device, weights carry
    /// TorchSharp's default initialisation (not HF's) — useful only for tests.
    /// </summary>
    public static TransformerModel Create(ModelConfig config, ModelHeadKind head, Device? device = null,
        ScalarType dtype = ScalarType.Float32, AttentionImplementation attention = AttentionImplementation.Sdpa)
    {
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16 or ScalarType.Float64))
            throw new ArgumentException($"Models compute in a floating-point type (Float32, BFloat16, Float16); got {dtype}.", nameof(dtype));
        var build = new ModelBuild(config, device ?? CPU, dtype, new AttentionSettings { Implementation = attention });
        using var _ = torch.no_grad();
        return (config.Architecture, head) switch {
            (ModelArchitecture.Llama or ModelArchitecture.Mistral or ModelArchitecture.Qwen2, ModelHeadKind.Base) => new LlamaModel(build),
            (ModelArchitecture.Llama or ModelArchitecture.Mistral or ModelArchitecture.Qwen2, ModelHeadKind.CausalLM) => new LlamaForCausalLM(build),
            (ModelArchitecture.Llama or ModelArchitecture.Mistral or ModelArchitecture.Qwen2, ModelHeadKind.SequenceClassification) => new LlamaForSequenceClassification(build),
            (ModelArchitecture.Gpt2, ModelHeadKind.Base) => new Gpt2Model(build),
            (ModelArchitecture.Gpt2, ModelHeadKind.CausalLM) => new Gpt2LMHeadModel(build),
            (ModelArchitecture.Gpt2, ModelHeadKind.SequenceClassification) => new Gpt2ForSequenceClassification(build),
            (ModelArchitecture.Bert or ModelArchitecture.Roberta, ModelHeadKind.Base) => new BertModel(build, addPoolingLayer: true),
            (ModelArchitecture.Bert, ModelHeadKind.SequenceClassification) => new BertForSequenceClassification(build),
            (ModelArchitecture.Roberta, ModelHeadKind.SequenceClassification) => new RobertaForSequenceClassification(build),
            (ModelArchitecture.Bert or ModelArchitecture.Roberta, ModelHeadKind.CausalLM) =>
                throw new NotSupportedException($"{config.ModelType} is an encoder; it has no causal LM head. Use SequenceClassification or Base."),
            _ => throw new ArgumentOutOfRangeException(nameof(head), head, null),
        };
    }

    /// <summary>
    /// The head a checkpoint was saved with, from config <c>architectures</c> (e.g. <c>BertForSequenceClassification</c>);
    /// without that: CausalLM for decoders, Base for encoders (their MLM heads are not built).
    /// </summary>
    public static ModelHeadKind DefaultHead(ModelConfig config)
    {
        foreach (var name in config.Architectures) {
            if (name.EndsWith("ForSequenceClassification", StringComparison.Ordinal)) return ModelHeadKind.SequenceClassification;
            if (name.EndsWith("ForCausalLM", StringComparison.Ordinal) || name.EndsWith("LMHeadModel", StringComparison.Ordinal))
                return config.IsDecoder ? ModelHeadKind.CausalLM : ModelHeadKind.Base;
        }
        return config.IsDecoder ? ModelHeadKind.CausalLM : ModelHeadKind.Base;
    }
}
