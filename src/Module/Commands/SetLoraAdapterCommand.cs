using System.Management.Automation;
using LoraPS.Models;
using LoraPS.Module.Adapters;
using LoraPS.Module.Infrastructure;

namespace LoraPS.Module.Commands;

/// <summary>Chooses which LoRA adapters a model uses, or switches all of them off and on.</summary>
/// <remarks>
/// <para>
/// With -Name, the named adapters become the active ones (PEFT set_adapter): the forward sums them and, unless they
/// were imported for inference, their parameters train; every other adapter is frozen and unused.
/// </para>
/// <para>
/// -Disable makes the model compute as the base model without removing anything (adapters merged into the weights
/// are unmerged first); -Enable undoes it. Adapters cannot be switched while merged: unmerge first with
/// Merge-LoraAdapter -Unmerge.
/// </para>
/// </remarks>
/// <example>Switch to another adapter
/// <code>Set-LoraAdapter -Model $model -Name qv</code>
/// <para>Only the adapter qv is used and trained from now on.</para>
/// </example>
/// <example>Compare with the base model
/// <code>Set-LoraAdapter -Model $model -Disable
/// Invoke-LoraGenerate -Model $model -Prompt 'Once upon a time'
/// Set-LoraAdapter -Model $model -Enable</code>
/// <para>Generates with the base weights alone, then turns the adapters back on.</para>
/// </example>
[Cmdlet(VerbsCommon.Set, "LoraAdapter", DefaultParameterSetName = ActivateSet)]
[OutputType(typeof(LoraAdapterState))]
public sealed class SetLoraAdapterCommand : AdapterCmdlet
{
    const string ActivateSet = "Activate", DisableSet = "Disable", EnableSet = "Enable";

    /// <summary>The model from Import-LoraModel.</summary>
    [Parameter(Mandatory = true, Position = 0)]
    [ValidateNotNull]
    public LoraModel Model { get; set; } = null!;

    /// <summary>The adapters to make active (one or several, summed); all others become inactive.</summary>
    [Parameter(Mandatory = true, Position = 1, ParameterSetName = ActivateSet, ValueFromPipelineByPropertyName = true)]
    [ValidateNotNullOrEmpty]
    public string[] Name { get; set; } = [];

    /// <summary>Run the model as the base model, keeping the adapters.</summary>
    [Parameter(Mandatory = true, ParameterSetName = DisableSet)]
    public SwitchParameter Disable { get; set; }

    /// <summary>Use the active adapters again after -Disable.</summary>
    [Parameter(Mandatory = true, ParameterSetName = EnableSet)]
    public SwitchParameter Enable { get; set; }

    /// <summary>Write the state of every adapter afterwards.</summary>
    [Parameter]
    public SwitchParameter PassThru { get; set; }

    readonly List<string> _names = [];

    protected override void ProcessRecord()
    {
        if (ParameterSetName == ActivateSet) _names.AddRange(ResolveAdapterNames(Model, Name).Where(n => !_names.Contains(n)));
    }

    // Names from the pipeline are collected, so `Get-LoraAdapter -Name a, b | Set-LoraAdapter -Model $m` activates both.
    protected override void EndProcessing()
    {
        switch (ParameterSetName)
        {
            case ActivateSet: RunEngine(_ => Model.Adapters.SetActive([.. _names]), Model); break;
            case DisableSet: RunEngine(_ => Model.Adapters.Disable(), Model); break;
            default: RunEngine(_ => Model.Adapters.Enable(), Model); break;
        }
        if (PassThru)
            foreach (var name in Model.Adapters.Names) WriteObject(RunEngine(_ => LoraAdapterState.Of(Model, name), Model));
    }
}
