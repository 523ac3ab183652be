using System.Management.Automation;
using LoraPS.Adapters;
using LoraPS.Models;
using LoraPS.Module.Adapters;
using LoraPS.Module.Infrastructure;

namespace LoraPS.Module.Commands;

/// <summary>Adds a new LoRA adapter to a model's linear layers (PEFT get_peft_model / add_adapter).</summary>
/// <remarks>
/// <para>
/// Add-LoraAdapter wraps every linear layer the config selects with a LoRA layer and freezes everything else, so only
/// the adapter (and any modules_to_save) trains. The first adapter on a model becomes active; later ones start
/// inactive — switch with Set-LoraAdapter. With -Seed the initial weights are reproducible and equal PEFT's after
/// torch.manual_seed(seed).
/// </para>
/// <para>
/// The result shows the adapter's rank, alpha, how many layers it wraps and the model's trainable parameters. If the
/// config matches no layer, the error lists the layer names the model has.
/// </para>
/// </remarks>
/// <example>Add an adapter to the bundled model
/// <code>$model = Import-LoraModel
/// New-LoraConfig -Rank 4 -TargetModules all-linear | Add-LoraAdapter -Model $model -Seed 1</code>
/// <para>Wraps every linear layer but lm_head; prints the trainable parameter count and percentage.</para>
/// </example>
/// <example>A second, named adapter
/// <code>Add-LoraAdapter -Model $model -Config (New-LoraConfig -TargetModules q_proj, v_proj) -Name qv</code>
/// <para>The new adapter starts inactive; activate it with Set-LoraAdapter -Model $model -Name qv.</para>
/// </example>
[Cmdlet(VerbsCommon.Add, "LoraAdapter")]
[OutputType(typeof(LoraAdapterState))]
public sealed class AddLoraAdapterCommand : AdapterCmdlet
{
    /// <summary>The model from Import-LoraModel.</summary>
    [Parameter(Mandatory = true, Position = 0)]
    [ValidateNotNull]
    public LoraModel Model { get; set; } = null!;

    /// <summary>The LoRA settings from New-LoraConfig.</summary>
    [Parameter(Mandatory = true, Position = 1, ValueFromPipeline = true)]
    [ValidateNotNull]
    public LoraConfig Config { get; set; } = null!;

    /// <summary>The adapter name; no dots.</summary>
    /// <value>Default: default.</value>
    [Parameter]
    [ValidateNotNullOrEmpty]
    public string Name { get; set; } = "default";

    /// <summary>Seed for the initial adapter weights, for reproducible runs.</summary>
    [Parameter]
    public long Seed { get; set; }

    protected override void ProcessRecord()
    {
        long? seed = MyInvocation.BoundParameters.ContainsKey(nameof(Seed)) ? Seed : null;
        RunEngine(_ => Model.Adapters.Add(Name, Config, seed), Config);
        var state = RunEngine(_ => LoraAdapterState.Of(Model, Name), Model);
        WriteVerbose($"Added adapter '{Name}' to {state.TargetCount} layers: {string.Join(", ", Model.Adapters.Get(Name).Targets.Select(t => t.Path))}");
        WriteObject(state);
    }
}
