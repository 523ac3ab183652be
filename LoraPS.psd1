# Module manifest template for LoraPS. The build copies it into out/LoraPS/ and stamps ModuleVersion from
# VersionPrefix in Directory.Build.props. CmdletsToExport is explicit (no wildcards): list every new cmdlet here;
# the build fails when this list and the cmdlets in LoraPS.dll differ.
@{
    RootModule           = 'LoraPS.dll'
    ModuleVersion        = '0.0.0'
    GUID                 = '242d932c-f962-404e-9edf-70a5e91295ba'
    Author               = 'LoraPS contributors'
    CompanyName          = 'LoraPS'
    Copyright            = '(c) LoraPS contributors. MIT License.'
    Description          = 'LoRA, QLoRA and LoRA-GA fine-tuning of language models for PowerShell and .NET, on TorchSharp: load Hugging Face checkpoints, attach PEFT-compatible adapters, train, merge, evaluate and generate.'
    PowerShellVersion    = '7.4'
    CompatiblePSEditions = @('Core')
    FormatsToProcess     = @('LoraPS.Format.ps1xml')
    CmdletsToExport      = @(
        'Add-LoraAdapter'
        'Get-LoraAdapter'
        'Get-LoraRuntime'
        'Import-LoraAdapter'
        'Import-LoraDataset'
        'Import-LoraModel'
        'Invoke-LoraEval'
        'Initialize-LoraGA'
        'Invoke-LoraGenerate'
        'Join-LoraAdapter'
        'Merge-LoraAdapter'
        'New-LoraConfig'
        'Remove-LoraAdapter'
        'Remove-LoraModel'
        'Save-LoraAdapter'
        'Set-LoraAdapter'
        'Start-LoraFinetune'
    )
    FunctionsToExport    = @()
    AliasesToExport      = @()
    VariablesToExport    = @()
    PrivateData          = @{
        PSData = @{
            Tags       = @('LoRA', 'QLoRA', 'PEFT', 'FineTuning', 'LLM', 'TorchSharp', 'MachineLearning', 'Linux', 'Windows', 'MacOS', 'PSEdition_Core')
            LicenseUri = ''
            ProjectUri = ''
        }
    }
}
